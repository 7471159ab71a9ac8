#include "text_fold.hpp"

#include <caresync/protocol/errors.hpp>

#include <algorithm>

namespace caresync::care {

namespace {

/// The connection's FTS5 API (SQLite's documented way: SELECT fts5(?1) with a pointer).
fts5_api* fts5_of(sqlite3* db) {
  fts5_api* api = nullptr;
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &raw, nullptr) == SQLITE_OK) {
    const std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> s(raw, sqlite3_finalize);
    sqlite3_bind_pointer(s.get(), 1, static_cast<void*>(&api), "fts5_api_ptr", nullptr);
    sqlite3_step(s.get());
  } else {
    sqlite3_finalize(raw);
  }
  if (!api) throw error(make_error_code(storage_errc::schema_mismatch), "this SQLite has no full-text search (FTS5)");
  return api;
}

}  // namespace

struct word_folder::tokenizer {
  fts5_tokenizer methods{};
  Fts5Tokenizer* instance = nullptr;
  ~tokenizer() {
    if (instance) methods.xDelete(instance);
  }
};

word_folder::word_folder(sqlite3* db) : tokenizer_(std::make_unique<tokenizer>()) {
  fts5_api* api = fts5_of(db);
  void* user = nullptr;
  if (api->xFindTokenizer(api, "unicode61", &user, &tokenizer_->methods) != SQLITE_OK) {
    throw error(make_error_code(storage_errc::schema_mismatch), "this SQLite has no unicode61 tokenizer");
  }
  // The same arguments as the registry index's tokenize= (care_schema.cpp).
  const char* args[] = {"remove_diacritics", "2"};
  if (tokenizer_->methods.xCreate(user, args, 2, &tokenizer_->instance) != SQLITE_OK) {
    tokenizer_->instance = nullptr;
    throw error(make_error_code(storage_errc::io_failed), "cannot start the text tokenizer");
  }
}

word_folder::~word_folder() = default;

std::vector<std::string> word_folder::words(std::string_view text) {
  std::vector<std::string> out;
  const auto on_token = [](void* ctx, int, const char* token, int bytes, int, int) -> int {
    static_cast<std::vector<std::string>*>(ctx)->emplace_back(token, static_cast<std::size_t>(bytes));
    return SQLITE_OK;
  };
  // The tokenizer takes an int length; names and queries are far shorter than the bound.
  const auto length = static_cast<int>(std::min<std::size_t>(text.size(), std::size_t{1} << 20));
  tokenizer_->methods.xTokenize(tokenizer_->instance, &out, FTS5_TOKENIZE_DOCUMENT, text.data(), length, on_token);
  return out;
}

std::string word_folder::joined(std::string_view text) {
  std::string out;
  for (const auto& w : words(text)) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

}  // namespace caresync::care
