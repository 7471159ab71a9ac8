#pragma once
// Words folded as the registry's full-text index folds them (SQLite FTS5's unicode61
// tokenizer with remove_diacritics 2: lower case, no diacritics, punctuation separates
// words), for matching outside the index: clients' names and municipalities, so that
// "novakova" finds "Nováková" and "horni lhota" finds "Horní Lhota" exactly as the
// registry's text search would. Not installed.
// Thread contract: as the connection's (the store's thread).

#include <sqlite3.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace caresync::care {

/// A tokenizer of the connection, kept for many texts (one search folds every
/// municipality name of the registry).
class word_folder {
 public:
  /// Throws caresync::error (storage) if the connection has no FTS5 (every store has:
  /// the registry index needs it).
  explicit word_folder(sqlite3* db);
  ~word_folder();
  word_folder(const word_folder&) = delete;
  word_folder& operator=(const word_folder&) = delete;

  /// The words of `text`, folded.
  std::vector<std::string> words(std::string_view text);
  /// The folded words joined by one space: two texts naming the same thing compare equal.
  std::string joined(std::string_view text);

 private:
  struct tokenizer;
  std::unique_ptr<tokenizer> tokenizer_;
};

}  // namespace caresync::care
