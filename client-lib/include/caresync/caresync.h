#ifndef CARESYNC_CARESYNC_H
#define CARESYNC_CARESYNC_H
/*
 * The C API of the caresync client library: a store on the device, records in and out
 * as JSON, sync with a caresync server over TLS. For apps and bindings that cannot use
 * the C++ API (store.hpp, sync_client.hpp); it is a thin layer over it, in the same
 * library (libcaresync.a and libcaresync.so). C99; no C++ exception crosses it.
 *
 * Errors: every function that can fail returns a cs_status (CS_OK is 0) and keeps a
 * sentence for a person, saying what happened and what to do, until the next call that
 * can fail: per store (cs_last_error) or, for calls without a store (cs_store_open,
 * cs_enroll, a NULL store), per thread (cs_open_error). cs_is_transient(status) says
 * whether the same call may succeed later (no signal, a busy server or file).
 *
 * Ownership: a cs_store is the caller's until cs_store_close. Every char* the API writes
 * to an out-parameter is the caller's and is freed with cs_free; on failure the
 * out-parameter is set to NULL. const char* returned by cs_last_error, cs_open_error
 * and cs_status_name belong to the library.
 *
 * JSON: records, schemas and options are UTF-8 JSON text. Field values map as
 *   null    <-> null
 *   integer <-> a number without fraction or exponent, within int64
 *   real    <-> a number (an integer number is accepted for a real field)
 *   text    <-> a string (append and set_union fields hold text too, as in C++:
 *               set_union is written as a string holding a JSON array of strings)
 *   bytes   <-> {"base64": "..."} (RFC 4648 standard alphabet, with padding)
 * A value of another JSON type, or one that does not fit the field's declared type, is
 * refused with CS_INVALID_ARGUMENT, as is JSON that does not parse.
 *
 * Threads: a store is used by one thread at a time, cs_sync included, as the C++ store
 * (store.hpp). Different stores may be used on different threads.
 */

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** What a call came to. Each code but CS_OK names a class of caresync's error
 *  categories (caresync/protocol/errors.hpp); cs_is_transient() is exact for them. */
typedef enum cs_status {
  CS_OK = 0,
  CS_INVALID_ARGUMENT = 1,  /**< a NULL or malformed argument, bad JSON, unknown collection or field, wrong value type */
  CS_NOT_FOUND = 2,         /**< the record does not exist or was deleted; the field has no open conflict */
  CS_STORAGE = 3,           /**< the store file cannot be opened, is damaged or not a caresync store, its tables differ from the schema */
  CS_STORAGE_BUSY = 4,      /**< another process holds the store, or a read or write failed (transient) */
  CS_NETWORK = 5,           /**< the server cannot be reached, the link dropped or timed out (transient) */
  CS_TLS = 6,               /**< the TLS handshake failed, the certificate is untrusted or the pinned key differs */
  CS_AUTH = 7,              /**< the server did not accept the device id or token */
  CS_REVOKED = 8,           /**< an administrator revoked this device; cs_sync wiped the store (it is empty, still open) */
  CS_ENROLLMENT_REFUSED = 9,/**< the enrollment code is unknown, used or expired */
  CS_SERVER_BUSY = 10,      /**< the server is busy, stopping, or could not store; try later (transient) */
  CS_PROTOCOL = 11,         /**< the server refused or sent something wrong (version, limits, malformed data) */
  CS_NO_MEMORY = 12,        /**< out of memory */
  CS_INTERNAL = 13          /**< any other failure inside the library; the message says what */
} cs_status;

/** A store opened by cs_store_open. Opaque. */
typedef struct cs_store cs_store;

/** How far a sync has come (as caresync::sync_progress): reported after each
 *  acknowledged push batch and each applied page. */
typedef struct cs_progress {
  uint64_t pushed;          /**< local changes stored by the server so far */
  uint64_t to_push;         /**< outbox entries when the push began */
  uint64_t pulled;          /**< changes applied so far */
  uint64_t to_pull;         /**< pulled plus what the server counts as left (an estimate) */
  uint64_t bytes_sent;      /**< TLS bytes of this attempt */
  uint64_t bytes_received;
  uint64_t pulled_bytes;    /**< change data applied so far, as the server counts it */
  uint64_t to_pull_bytes;   /**< change data expected in all */
  int priority_ready;       /**< nonzero once a prioritised initial sync's first part is in (always 0 here: the C API sets no tiers) */
} cs_progress;

/** Progress callback of cs_sync: called on the thread that called cs_sync, with `user`
 *  as given. `progress` is valid during the call only. It must not call the API with the
 *  store being synced, and must return normally (no longjmp, no C++ exception). */
typedef void (*cs_progress_fn)(const cs_progress* progress, void* user);

/** The name of a status, e.g. "CS_NOT_FOUND"; "CS_UNKNOWN" for a value not listed.
 *  Static storage; never NULL. */
const char* cs_status_name(cs_status status);

/** 1 when retrying the same call later may succeed (CS_STORAGE_BUSY, CS_NETWORK,
 *  CS_SERVER_BUSY), else 0. */
int cs_is_transient(cs_status status);

/** The message of the last failed call on `store` ("" after a call that succeeded). With
 *  a NULL store, the same as cs_open_error(). Valid until the next call on that store or
 *  cs_store_close; never NULL. */
const char* cs_last_error(const cs_store* store);

/** The message of the last failed call on this thread that had no store: cs_store_open,
 *  cs_enroll, or any call given a NULL store ("" after one that succeeded). Valid until
 *  the thread's next such call; never NULL. */
const char* cs_open_error(void);

/** Frees a string the API returned (an id, a record, a report). NULL is ignored. */
void cs_free(char* text);

/** Opens or creates the store at `path` (a SQLite file; created with its tables if
 *  missing, columns added for new fields). `schema_json` declares the collections:
 *    {"collections": [{"name": "visits", "fields": [
 *        {"name": "date", "type": "text"},
 *        {"name": "note", "type": "text", "policy": "keep_both"}]}]}
 *  type: "integer", "real", "text" or "bytes"; policy (optional): "last_writer_wins"
 *  (the default), "keep_both", "append" or "set_union" (docs/conflicts.md); "server_only":
 *  true (optional) for a field only the server side writes, which this store refuses to
 *  write (a field device's store). A collection may add "deletes": "delete_wins" (the
 *  default) or "update_revives" (an edit made without seeing a delete brings the record
 *  back; docs/conflicts.md, "Deletes"). Every commit
 *  is made durable (fsync). On success *out is the new store, the caller's to close.
 *  CS_INVALID_ARGUMENT (bad schema), CS_STORAGE, CS_STORAGE_BUSY; message: cs_open_error(). */
cs_status cs_store_open(const char* path, const char* schema_json, cs_store** out);

/** Closes a store and frees the handle. NULL is ignored. Never fails. */
void cs_store_close(cs_store* store);

/** Creates a record in `collection` with the fields of `fields_json` (an object of
 *  field name to value, e.g. {"date": "2026-11-23", "duration_min": 45}) and writes its
 *  new id (a UUID, 36 characters) to *id_out (cs_free it). CS_INVALID_ARGUMENT for an
 *  unknown collection or field or a value that does not fit; CS_STORAGE_BUSY. */
cs_status cs_create(cs_store* store, const char* collection, const char* fields_json, char** id_out);

/** Sets the fields of `fields_json` on the record `id`; the others keep their values.
 *  CS_NOT_FOUND if the record does not exist or was deleted; as cs_create otherwise. */
cs_status cs_update(cs_store* store, const char* collection, const char* id, const char* fields_json);

/** Deletes the record `id` (a tombstone that syncs). CS_NOT_FOUND if it does not exist. */
cs_status cs_remove(cs_store* store, const char* collection, const char* id);

/** Writes the record `id` to *record_json_out (cs_free it) as one JSON object: "id" and
 *  every field with a value, fields the schema does not declare (from a newer app
 *  version) included. CS_NOT_FOUND if it does not exist or was deleted;
 *  CS_INVALID_ARGUMENT for an unknown collection or an id that is not a UUID. */
cs_status cs_get(cs_store* store, const char* collection, const char* id, char** record_json_out);

/** Writes every open conflict (keep_both fields two people wrote offline) to *json_out
 *  (cs_free it) as a JSON array, ordered by collection, record id and field:
 *    [{"collection": "visits", "id": "...", "field": "note", "record_deleted": false, "record_revived": false,
 *      "current": {"value": ..., "at_ms": 1763856000000, "node": "3f2a..."},
 *      "others": [{"value": ..., "at_ms": ..., "node": "..."}]}]
 *  "current" is the value the record shows, "others" the concurrent values that lost;
 *  at_ms is when the value was written (the writer's clock, ms since the Unix epoch) and
 *  node the writing store's id (16 hex digits). record_deleted: the record was deleted
 *  while someone edited it (current is null); the delete stands. record_revived (field
 *  ""): the record was deleted (current: null, the delete's at_ms and node) and brought
 *  back by an edit made without seeing the delete (collections with "deletes":
 *  "update_revives"); dismiss it to accept the record as it is, or delete the record. */
cs_status cs_conflicts(cs_store* store, char** json_out);

/** Resolves the open conflict of `field` by writing `value_json` (one JSON value, e.g.
 *  "\"both notes merged\""): every replica closes the conflict when the change reaches
 *  it. CS_NOT_FOUND when the field has no open conflict or the record was deleted. */
cs_status cs_resolve_conflict(cs_store* store, const char* collection, const char* id, const char* field,
                              const char* value_json);

/** Closes the open conflict of `field` keeping the value the record shows; on a deleted
 *  record, keeps the delete; field "" of a revived record keeps the record.
 *  CS_NOT_FOUND when there is none. */
cs_status cs_dismiss_conflict(cs_store* store, const char* collection, const char* id, const char* field);

/** Synchronises the store with a server: pushes the outbox, pulls what changed, retrying
 *  transient failures. Blocks until done. `options_json`:
 *    {"host": "sync.example.org", "port": 7443, "ca_file": "/data/app/region-ca.pem",
 *     "pinned_key_sha256": "...", "device_id": "d-...", "token": "...",
 *     "app_version": "field-app 1.0", "max_attempts": 3,
 *     "connect_timeout_ms": 10000, "io_timeout_ms": 30000}
 *  device_id and token are required, and ca_file or pinned_key_sha256; the rest are
 *  optional (defaults as in caresync::sync_options); other keys are refused. `progress`
 *  may be NULL. On success, if report_json_out is not NULL, *report_json_out is the
 *  report (cs_free it):
 *    {"pushed", "quarantined", "reverted", "batches", "pulled", "pages", "primed", "conflicts",
 *     "bytes_sent", "bytes_received", "duration_ms", "cursor", "attempts", "resolved",
 *     "purged", "refused_out_of_scope", "tokens_stored"}
 *  (all numbers; tokens_stored: new tokens the cs_set_token_callback callback stored; purged: records the server told this device to delete because they left
 *  its scope; refused_out_of_scope: records deleted because a change to them was refused
 *  as outside the device's scope, the change kept in the quarantine). Work done before a failure is kept; run it again. CS_REVOKED: the
 *  store was wiped. Errors: CS_NETWORK, CS_TLS, CS_AUTH, CS_SERVER_BUSY, CS_PROTOCOL,
 *  storage codes, CS_INVALID_ARGUMENT for bad options. */
cs_status cs_sync(cs_store* store, const char* options_json, cs_progress_fn progress, void* user,
                  char** report_json_out);

/** Token rotation callback (docs/security.md, "Token rotation"): cs_sync calls it on
 *  its thread, with `user` as given to cs_set_token_callback, when the server hands this
 *  device a new token. `new_token` (NUL-terminated, valid during the call only) must be
 *  made durable, in the platform's secure storage in place of the old token, before the
 *  callback returns 0: the server accepts it from now on and, once the device presents
 *  it, no longer the old one. Any other return value says it could not be stored; the
 *  library then goes on with the old token, which stays valid, and the server hands out
 *  another at a later sync. Give the stored token in the next cs_sync's options. The
 *  callback must not call the API with the store being synced, must return normally
 *  (no longjmp, no C++ exception), and must never log the token. */
typedef int (*cs_token_fn)(const char* new_token, void* user);

/** Sets the store's token rotation callback (fn not NULL) or clears it (NULL). cs_sync
 *  tells the server it can take a new token only while one is set; without it the token
 *  never changes. Within one cs_sync, connections after the callback returned 0 use the
 *  new token; the report's "tokens_stored" counts the tokens stored. CS_INVALID_ARGUMENT
 *  for a NULL store. */
cs_status cs_set_token_callback(cs_store* store, cs_token_fn fn, void* user);

/** Presents a one-time enrollment code (dashes, spaces and case do not matter) to the
 *  server `options_json` names (as cs_sync's options, without device_id and token) and
 *  writes what the server gave to *enrollment_json_out (cs_free it):
 *    {"device_id": "d-...", "token": "...", "user_id": "...", "user_name": "..."}
 *  Keep the token in the platform's secure storage and use both in cs_sync's options.
 *  CS_ENROLLMENT_REFUSED (the message says why), network and TLS codes; message:
 *  cs_open_error(). */
cs_status cs_enroll(const char* options_json, const char* code, char** enrollment_json_out);

#ifdef __cplusplus
}
#endif

#endif /* CARESYNC_CARESYNC_H */
