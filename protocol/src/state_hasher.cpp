#include <caresync/protocol/errors.hpp>
#include <caresync/protocol/merge.hpp>
#include <caresync/protocol/sha256.hpp>

#include <openssl/evp.h>

#include <bit>
#include <cstring>

namespace caresync {

namespace {

EVP_MD_CTX* md(void* p) { return static_cast<EVP_MD_CTX*>(p); }

void feed(void* ctx, const void* p, std::size_t n) { EVP_DigestUpdate(md(ctx), p, n); }

void feed_u64(void* ctx, std::uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
  feed(ctx, b, 8);
}

void feed_text(void* ctx, std::string_view s) {
  feed_u64(ctx, s.size());
  feed(ctx, s.data(), s.size());
}

void feed_version(void* ctx, const version& v) {
  feed_u64(ctx, v.stamp.value);
  feed_u64(ctx, v.node);
}

void feed_value(void* ctx, const value& v) {
  const auto tag = static_cast<unsigned char>(v.index());
  feed(ctx, &tag, 1);
  switch (kind_of(v)) {
    case value_kind::null: break;
    case value_kind::integer: feed_u64(ctx, static_cast<std::uint64_t>(std::get<std::int64_t>(v))); break;
    case value_kind::real: feed_u64(ctx, std::bit_cast<std::uint64_t>(std::get<double>(v))); break;
    case value_kind::text: feed_text(ctx, std::get<std::string>(v)); break;
    case value_kind::bytes: {
      const auto& b = std::get<blob>(v).bytes;
      feed_u64(ctx, b.size());
      feed(ctx, b.data(), b.size());
      break;
    }
  }
}

}  // namespace

void state_hasher::ctx_deleter::operator()(void* ctx) const noexcept { EVP_MD_CTX_free(md(ctx)); }

state_hasher::state_hasher() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(md(ctx_.get()), EVP_sha256(), nullptr) != 1) {
    throw error(make_error_code(storage_errc::invalid_argument), "OpenSSL could not start a SHA-256 digest");
  }
}

state_hasher::~state_hasher() = default;

void state_hasher::add(std::string_view collection, const record_id& id, const record_state& state) {
  void* ctx = ctx_.get();
  feed_text(ctx, collection);
  feed(ctx, id.bytes.data(), id.bytes.size());
  // Bit 0: a final tombstone; bits 1 and 2 (protocol version 6): revivable deletes and a
  // dismissal, so the digest of a record without them is as before.
  const unsigned char deleted =
      static_cast<unsigned char>((state.deleted ? 1 : 0) | (state.removed ? 2 : 0) | (state.dismissed ? 4 : 0));
  feed(ctx, &deleted, 1);
  if (state.deleted) feed_version(ctx, *state.deleted);
  if (state.removed || state.dismissed) {
    if (state.removed) feed_version(ctx, *state.removed);
    if (state.dismissed) feed_version(ctx, *state.dismissed);
    feed_u64(ctx, state.covered.size());
    for (const auto& v : state.covered) feed_version(ctx, v);
  }
  feed_u64(ctx, state.fields.size());
  for (const auto& [name, field] : state.fields) {  // std::map: sorted by name
    feed_text(ctx, name);
    feed_version(ctx, field.ver);
    feed_value(ctx, field.val);
    const unsigned char kept = field.kept ? 1 : 0;
    feed(ctx, &kept, 1);
    feed_u64(ctx, field.conflicts.size());
    for (const auto& c : field.conflicts) {  // ascending by version
      feed_version(ctx, c.ver);
      feed_value(ctx, c.val);
    }
    feed_u64(ctx, field.items.size());
    for (const auto& i : field.items) {  // ascending by (version, value)
      feed_version(ctx, i.ver);
      feed_value(ctx, i.val);
    }
  }
  ++count_;
}

std::string state_hasher::finish() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(md(ctx_.get()), out, &n);
  return to_hex({out, n});
}

}  // namespace caresync
