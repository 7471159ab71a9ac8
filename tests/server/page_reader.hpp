#pragma once
// Reads one page from a change store and decodes it from the bytes a client would
// receive, for the server's store tests.

#include <caresync/protocol/codec.hpp>
#include <caresync/server/change_store.hpp>

#include <cstdint>
#include <variant>

namespace caresync::testing {

struct page_read {
  server::page_position position;
  wire::changes_page page;
  std::size_t change_bytes = 0;  ///< bytes of changes in the page, as the builder counted
};

inline page_read read_decoded_page(server::change_store& store, std::uint64_t cursor, node_id exclude,
                                   std::uint32_t max_changes, std::uint32_t max_bytes) {
  wire::changes_page_builder builder;
  page_read r;
  r.position = store.read_page(cursor, exclude, max_changes, max_bytes, builder);
  r.change_bytes = builder.size_bytes();
  auto decoded = wire::decode(wire::message_type::changes, builder.finish(r.position.next_cursor, r.position.more));
  r.page = std::get<wire::changes_page>(std::move(decoded));
  return r;
}

}  // namespace caresync::testing
