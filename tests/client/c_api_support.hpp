#pragma once
// Owners for what the C API hands out, so a failed assertion leaks nothing, and the
// schema the C API tests declare.

#include <caresync/caresync.h>

#include <string>

namespace caresync::testing {

/// A string the C API returned, freed with cs_free.
struct c_string {
  char* p = nullptr;
  c_string() = default;
  c_string(const c_string&) = delete;
  c_string& operator=(const c_string&) = delete;
  ~c_string() { cs_free(p); }
  char** out() {
    cs_free(p);
    p = nullptr;
    return &p;
  }
  std::string str() const { return p ? p : ""; }
};

/// A store the C API opened, closed with cs_store_close.
struct c_store {
  cs_store* p = nullptr;
  c_store() = default;
  c_store(const c_store&) = delete;
  c_store& operator=(const c_store&) = delete;
  ~c_store() { cs_store_close(p); }
  operator cs_store*() const { return p; }
};

/// Visits with one field of each type and a keep_both note.
inline const char* c_api_schema() {
  return R"({"collections": [
    {"name": "visits", "fields": [
      {"name": "date", "type": "text"},
      {"name": "duration_min", "type": "integer"},
      {"name": "score", "type": "real"},
      {"name": "photo", "type": "bytes"},
      {"name": "note", "type": "text", "policy": "keep_both"},
      {"name": "tasks", "type": "text", "policy": "set_union"},
      {"name": "org_unit", "type": "text"}]},
    {"name": "clients", "fields": [{"name": "name", "type": "text", "policy": "last_writer_wins"}]}]})";
}

}  // namespace caresync::testing
