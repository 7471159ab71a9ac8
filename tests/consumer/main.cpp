// An app using the installed caresync library: opens a store, records a visit offline,
// reads it back, and checks that it waits in the outbox. Exits 0 when all holds.
#include <caresync/store.hpp>
#include <caresync/sync_client.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer STORE_FILE\n");
    return 2;
  }
  using namespace caresync;
  schema s{{collection_def{"visits", {{"client_id", value_kind::text}, {"duration_min", value_kind::integer}}}}};
  auto local = store::open({argv[1], s});
  const auto id = local->create("visits", {{"client_id", std::string("c-1")}, {"duration_min", std::int64_t{45}}});
  const auto back = local->get("visits", id);
  const bool ok = back && back->at("duration_min") == value{std::int64_t{45}} && local->outbox_size() == 1 &&
                  !local->is_synced("visits", id);
  sync_options o;  // the sync API links too; nothing is contacted here
  o.device_id = "tablet-1";
  std::printf("consumer: visit %s recorded, %s\n", id.to_string().c_str(), ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
