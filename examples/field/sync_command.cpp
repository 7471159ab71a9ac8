#include "sync_command.hpp"

#include "messages.hpp"

#include <caresync/protocol/errors.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <thread>

namespace caresync::field {

namespace {

/// 14400 -> "14,400": counts a person reads at a glance.
std::string grouped(std::uint64_t n) {
  // Built forward rather than with insert(), which GCC 12 -Wrestrict misreads here.
  const auto digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

/// 7900 -> "7.9 kB/s".
std::string rate_text(double bytes_per_second) {
  char buf[32];
  if (bytes_per_second >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.1f MB/s", bytes_per_second / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f kB/s", bytes_per_second / 1e3);
  }
  return buf;
}

/// 200 s -> "3 min 20 s".
std::string duration_text(std::chrono::seconds s) {
  const auto n = s.count();
  if (n < 60) return std::to_string(n) + " s";
  if (n < 3600) return std::to_string(n / 60) + " min " + std::to_string(n % 60) + " s";
  return std::to_string(n / 3600) + " h " + std::to_string((n % 3600) / 60) + " min";
}

/// The progress bar on one line of stderr, redrawn in place; newline() ends it before
/// anything else is printed, so a message never lands on the bar's line.
class progress_bar {
 public:
  void draw(const sync_progress& p) {
    const int width = 30;
    // Catching up: the tablet's share of what it expects, across cuts and runs.
    const std::uint64_t total = std::max(p.expected, p.held);
    const int filled = total ? static_cast<int>(width * p.held / total) : width;
    std::string line = "[" + std::string(static_cast<std::size_t>(filled), '#') +
                       std::string(static_cast<std::size_t>(width - filled), ' ') + "] ";
    if (total) {
      line += fill(tr("{} of {} changes on the tablet"), {grouped(p.held), grouped(total)});
    } else {
      line += tr("up to date");
    }
    if (p.to_push) line += fill(tr(", sent {} of {}"), {grouped(p.pushed), grouped(p.to_push)});
    if (p.bytes_per_second > 0) line += ", " + rate_text(p.bytes_per_second);
    if (total && p.held < total && p.time_left.count() >= 0) line += fill(tr(", about {} left"), {duration_text(p.time_left)});
    // Pad over what a longer line drew before.
    const auto shown = line.size();
    if (line.size() < drawn_) line += std::string(drawn_ - line.size(), ' ');
    drawn_ = shown;
    std::fprintf(stderr, "\r%s", line.c_str());
    std::fflush(stderr);
    open_ = true;
  }
  void newline() {
    if (!open_) return;
    std::fprintf(stderr, "\n");
    open_ = false;
    drawn_ = 0;
  }

 private:
  bool open_ = false;
  std::size_t drawn_ = 0;
};

/// One line: the link was lost, what the tablet keeps, that it goes on.
void tell_lost(progress_bar& bar, const std::string& why, const sync_progress& kept, std::chrono::milliseconds pause) {
  bar.newline();
  std::cerr << fill(tr("link lost ({})"), {why});
  if (kept.expected) std::cerr << fill(tr("; {} of {} changes are on the tablet"), {grouped(kept.held), grouped(kept.expected)});
  std::cerr << fill(tr("; resuming in {} s"), {std::to_string((pause.count() + 999) / 1000)}) << "\n";
}

}  // namespace

int run_sync(store& local, sync_options server, const sync_command_options& command) {
  progress_bar bar;
  server.on_progress = [&bar](const sync_progress& p) { bar.draw(p); };
  server.on_retry = [&bar](const std::error_code&, const std::string& message, const sync_progress& kept,
                           std::chrono::milliseconds pause) { tell_lost(bar, message, kept, pause); };
  // A token stored by the app's on_new_token (token rotation) is the one the next sync
  // of the loop presents.
  std::string rotated;
  if (server.on_new_token) {
    server.on_new_token = [store_token = server.on_new_token, &rotated](const std::string& token) {
      store_token(token);
      rotated = token;
    };
  }
  if (command.until_done) server.retry.max_attempts = std::max(server.retry.max_attempts, 5u);
  const auto started = std::chrono::steady_clock::now();
  const auto past_deadline = [&](std::chrono::seconds ahead) {
    return command.deadline && std::chrono::steady_clock::now() + ahead - started > *command.deadline;
  };
  std::chrono::seconds pause{1};
  std::mt19937_64 rng{std::random_device{}()};
  for (;;) {
    try {
      if (!rotated.empty()) server.token = rotated;
      const auto r = sync_client(local, server).sync();
      bar.newline();
      std::cout << fill(tr("synced: {} pushed, {} pulled, {} conflicting, {} refused, {} open conflict(s), {} bytes in {} ms"),
                        {std::to_string(r.pushed), std::to_string(r.pulled), std::to_string(r.conflicts),
                         std::to_string(r.quarantined), std::to_string(local.conflict_count()),
                         std::to_string(r.bytes_sent + r.bytes_received), std::to_string(r.duration.count())})
                << "\n";
      if (r.quarantined > 0) std::cout << tr("The server refused some changes: 'pending' shows which and why.") << "\n";
      if (local.conflict_count() > 0) std::cout << tr("Some values were edited on two tablets: 'conflicts' shows them.") << "\n";
      return 0;
    } catch (const error& e) {
      bar.newline();
      if (e.code() == make_error_code(storage_errc::invalid_argument)) throw;
      std::cerr << "caresync-field: " << fill(tr("the sync failed: {}"), {e.what()}) << "\n";
      if (e.code() != make_error_code(protocol_errc::device_revoked)) {
        const auto waiting = local.outbox_size();
        std::cerr << "caresync-field: " << tr("everything recorded is safe on this tablet");
        if (waiting > 0) {
          std::cerr << fill(trn(" ({} change waits to be sent)", " ({} changes wait to be sent)", waiting),
                            {std::to_string(waiting)});
        }
        std::cerr << tr("; sync again when the signal is better ('pending' lists what waits)") << "\n";
      }
      if (!command.until_done || !is_transient(e.code())) return 1;
      // Full jitter up to the backoff, which doubles up to the cap.
      const auto wait = std::chrono::seconds(std::uniform_int_distribution<std::int64_t>(1, pause.count())(rng));
      if (past_deadline(wait)) {
        std::cerr << "caresync-field: " << tr("the deadline has passed; what came so far stays on the tablet") << "\n";
        return 1;
      }
      std::cerr << "caresync-field: " << fill(tr("trying again in {} s"), {std::to_string(wait.count())}) << "\n";
      std::this_thread::sleep_for(wait);
      pause = std::min(pause * 2, command.max_pause);
    }
  }
}

}  // namespace caresync::field
