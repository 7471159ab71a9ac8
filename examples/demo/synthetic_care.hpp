#pragma once
/// Synthetic field-care content for the demo: names, places and visit notes that are
/// plainly made up ("Vzorová" is Czech for "sample"), so nothing the demo prints or
/// stores could be mistaken for a real person's record.
/// Thread contract: free functions; each call uses only the generator it is given.

#include <cstdint>
#include <random>
#include <string>

namespace caresync::demo {

/// The demo's random source: seeded from --seed so that a run's actions can be repeated
/// (record ids and clock stamps still differ, as they must).
using demo_rng = std::mt19937_64;

/// A client's full name, e.g. "Marie Vzorová (synthetic)".
std::string synthetic_client_name(demo_rng& rng);

/// A municipality of the Central Bohemian region.
std::string synthetic_municipality(demo_rng& rng);

/// What kind of contact a visit was: "home visit", "phone call", ...
std::string synthetic_visit_kind(demo_rng& rng);

/// A visit note, always starting "Visit note (synthetic): ".
std::string synthetic_visit_note(demo_rng& rng);

/// A follow-up sentence a worker appends to a note when editing a visit later.
std::string synthetic_note_addendum(demo_rng& rng);

/// A visit status a worker sets when reviewing a visit: "follow-up needed", "closed", ...
std::string synthetic_review_status(demo_rng& rng);

/// A visit duration in minutes (15-120, in steps of 5).
std::int64_t synthetic_duration_min(demo_rng& rng);

/// Today's date plus `day_offset` days, as "YYYY-MM-DD" (UTC).
std::string visit_date(int day_offset);

/// A uniformly chosen index below `n` (n > 0).
std::size_t pick_index(demo_rng& rng, std::size_t n);

/// True with probability `p`.
bool chance(demo_rng& rng, double p);

}  // namespace caresync::demo
