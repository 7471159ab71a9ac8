#include <caresync/protocol/messages.hpp>

namespace caresync::wire {

message_type type_of(const message& m) noexcept {
  static constexpr message_type k_types[] = {
      message_type::hello,   message_type::welcome, message_type::push,
      message_type::push_result, message_type::pull, message_type::changes,
      message_type::error,   message_type::ping,    message_type::pong,
      message_type::wait,    message_type::prime,   message_type::enroll,
      message_type::enrolled,
  };
  return k_types[m.index()];
}

const char* to_string(message_type t) noexcept {
  switch (t) {
    case message_type::hello: return "hello";
    case message_type::welcome: return "welcome";
    case message_type::push: return "push";
    case message_type::push_result: return "push_result";
    case message_type::pull: return "pull";
    case message_type::changes: return "changes";
    case message_type::error: return "error";
    case message_type::ping: return "ping";
    case message_type::pong: return "pong";
    case message_type::wait: return "wait";
    case message_type::prime: return "prime";
    case message_type::enroll: return "enroll";
    case message_type::enrolled: return "enrolled";
  }
  return "unknown";
}

}  // namespace caresync::wire
