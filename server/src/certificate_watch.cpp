#include "certificate_watch.hpp"

#include "log.hpp"

#include <asio/post.hpp>
#include <asio/strand.hpp>

#include <ctime>

namespace caresync::server {

certificate_expiry expiry_at(std::int64_t not_after, std::int64_t now) noexcept {
  if (not_after <= now) return certificate_expiry::expired;
  if (not_after - now <= k_expiry_warning_days * 86400) return certificate_expiry::expiring;
  return certificate_expiry::valid;
}

certificate_watch::certificate_watch(asio::io_context& io, std::string file, std::int64_t not_after,
                                     std::chrono::steady_clock::duration interval)
    : timer_(asio::make_strand(io)), file_(std::move(file)), not_after_(not_after), interval_(interval) {}

void certificate_watch::start() {
  asio::post(timer_.get_executor(), [this] {
    check(true);
    arm();
  });
}

void certificate_watch::stop() {
  asio::post(timer_.get_executor(), [this] { timer_.cancel(); });
}

void certificate_watch::arm() {
  timer_.expires_after(interval_);
  timer_.async_wait([this](const std::error_code& ec) {
    if (ec) return;  // cancelled: the server stops
    check(false);
    arm();
  });
}

void certificate_watch::check(bool at_start) {
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  const auto until = log::iso_time(static_cast<std::uint64_t>(not_after_ > 0 ? not_after_ : 0) * 1000);
  // Whole days, rounded down: "expires in 0 days" means within the next 24 hours.
  const auto days = (not_after_ - now) / 86400;
  const nlohmann::ordered_json fields{{"certificate_file", file_}, {"not_after", until}, {"days_left", days}};
  switch (expiry_at(not_after_, now)) {
    case certificate_expiry::expired:
      log::error("certificate_expired", fields,
                 "the server certificate " + file_ + " expired at " + until +
                     "; tablets that check it against the CA file refuse the server. Renew it (caresync-server "
                     "renew-certificate) and restart the server");
      return;
    case certificate_expiry::expiring:
      log::write("warning", "certificate_expiring", fields,
                 "the server certificate " + file_ + " expires at " + until + ", in " + std::to_string(days) +
                     " day(s); renew it (caresync-server renew-certificate) and restart the server");
      return;
    case certificate_expiry::valid:
      if (at_start) {
        log::info("certificate", fields,
                  "serving the certificate " + file_ + ", valid until " + until + " (" + std::to_string(days) + " days)");
      }
      return;
  }
}

}  // namespace caresync::server
