#pragma once
// The benchmark's data: synthetic home-care visits, generated up front from a fixed seed
// so every run writes the same rows and generation is never part of a measurement.
// Thread contract: plain values; make_visits may be called from any thread.

#include <caresync/protocol/change.hpp>
#include <caresync/schema.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace caresync::bench {

/// Bytes in every visit's note.
inline constexpr std::size_t k_note_bytes = 200;

/// One visit row as the app would write it (the record id is made by the store, or
/// pre-made for the raw SQLite baseline).
struct visit {
  std::string id;              ///< canonical UUID text, used only by the raw SQLite baseline
  std::string client_id;       ///< UUID of one of 2000 clients
  std::string worker_id;       ///< UUID of one of 50 workers
  std::string org_unit;        ///< e.g. "orp-benesov/team-3", one of 20
  std::string date;            ///< YYYY-MM-DD within 2024
  std::int64_t duration_min;   ///< 15-180 in steps of 5
  std::string activity_codes;  ///< 1-3 distinct codes, e.g. "A12,B07"
  std::string note;            ///< exactly k_note_bytes bytes of valid UTF-8 free text
  std::string status;          ///< planned, done, cancelled or no_one_home
};

/// The collection the benchmark writes: "visits" with the fields of `visit`.
caresync::schema visit_schema();

/// Makes `count` visits from a std::mt19937_64 seeded with `seed`.
std::vector<visit> make_visits(std::size_t count, std::uint64_t seed);

/// The fields of `v` in the form store::create takes (every field of visit_schema()).
std::vector<field_write> to_fields(const visit& v);

}  // namespace caresync::bench
