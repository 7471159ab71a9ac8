#include <caresync/protocol/hlc.hpp>

#include <openssl/rand.h>

#include <chrono>
#include <stdexcept>

namespace caresync {

std::uint64_t system_time_ms() noexcept {
  using namespace std::chrono;
  return static_cast<std::uint64_t>(
      duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

node_id generate_node_id() {
  node_id id = 0;
  while (id == 0) {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&id), sizeof id) != 1) {
      throw std::runtime_error("the system's random source failed; cannot make a node id");
    }
  }
  return id;
}

hybrid_clock::hybrid_clock(time_source source) : source_(std::move(source)) {}

hlc_stamp hybrid_clock::now() {
  const std::uint64_t wall = source_() & ((std::uint64_t{1} << 48) - 1);
  if (wall > last_.wall_ms()) {
    last_ = hlc_stamp::make(wall, 0);
  } else if (last_.counter() == 0xffff) {
    // 65,536 stamps in one millisecond: borrow the next millisecond rather than wrap.
    last_ = hlc_stamp::make(last_.wall_ms() + 1, 0);
  } else {
    last_ = hlc_stamp{last_.value + 1};
  }
  return last_;
}

void hybrid_clock::observe(hlc_stamp seen) noexcept {
  if (seen > last_) last_ = seen;
}

}  // namespace caresync
