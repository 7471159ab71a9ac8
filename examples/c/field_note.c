/*
 * field_note: the caresync C API (caresync.h) from a C program. Opens a store, records a
 * visit, reads it back as JSON, shows a deleted visit is gone, lists open conflicts and,
 * when a server is named on the command line, syncs with a progress callback.
 *
 *   field_note STORE [--host H] [--port P] (--ca FILE | --pin SHA256) --device ID --token T
 *
 * Prints what it did; exits 0, or 1 with the library's message on any error (2 for a
 * bad command line). The note is synthetic; the token is never printed.
 */

#include <caresync/caresync.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char* const k_schema =
    "{\"collections\": [{\"name\": \"visits\", \"fields\": ["
    "{\"name\": \"client_id\", \"type\": \"text\"},"
    "{\"name\": \"date\", \"type\": \"text\"},"
    "{\"name\": \"duration_min\", \"type\": \"integer\"},"
    "{\"name\": \"score\", \"type\": \"real\"},"
    "{\"name\": \"signature\", \"type\": \"bytes\"},"
    "{\"name\": \"note\", \"type\": \"text\", \"policy\": \"keep_both\"}]}]}";

/* Prints the failed step and the library's message, closes the store, and exits 1. */
static void fail(cs_store* store, const char* step, cs_status status) {
  fprintf(stderr, "field_note: %s failed: %s: %s\n", step, cs_status_name(status), cs_last_error(store));
  if (cs_is_transient(status)) fprintf(stderr, "field_note: this may succeed later; nothing was lost\n");
  cs_store_close(store);
  exit(1);
}

static void on_progress(const cs_progress* p, void* user) {
  unsigned* calls = (unsigned*)user;
  ++*calls;
  printf("progress: pushed %llu of %llu, pulled %llu of %llu\n", (unsigned long long)p->pushed,
         (unsigned long long)p->to_push, (unsigned long long)p->pulled, (unsigned long long)p->to_pull);
}

/* Appends "key": "text" (JSON-escaped) to out, which has room for `size` bytes.
 * Returns 0 when it does not fit. */
static int append_member(char* out, size_t size, const char* key, const char* text) {
  size_t n = strlen(out);
  int wrote = snprintf(out + n, size - n, "%s\"%s\": \"", n > 1 ? ", " : "", key);
  if (wrote < 0 || (size_t)wrote >= size - n) return 0;
  n += (size_t)wrote;
  for (; *text; ++text) {
    unsigned char c = (unsigned char)*text;
    char escaped[8];
    if (c == '"' || c == '\\') {
      snprintf(escaped, sizeof escaped, "\\%c", c);
    } else if (c < 0x20) {
      snprintf(escaped, sizeof escaped, "\\u%04x", c);
    } else {
      escaped[0] = (char)c;
      escaped[1] = '\0';
    }
    if (n + strlen(escaped) + 1 >= size) return 0;
    strcpy(out + n, escaped);
    n += strlen(escaped);
  }
  if (n + 2 >= size) return 0;
  strcpy(out + n, "\"");
  return 1;
}

static int usage(void) {
  fprintf(stderr,
          "usage: field_note STORE [--host H] [--port P] (--ca FILE | --pin SHA256) --device ID --token T\n");
  return 2;
}

int main(int argc, char** argv) {
  const char *host = NULL, *port = NULL, *ca = NULL, *pin = NULL, *device = NULL, *token = NULL;
  int i;
  if (argc < 2 || argv[1][0] == '-') return usage();
  for (i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--host") == 0) host = argv[i + 1];
    else if (strcmp(argv[i], "--port") == 0) port = argv[i + 1];
    else if (strcmp(argv[i], "--ca") == 0) ca = argv[i + 1];
    else if (strcmp(argv[i], "--pin") == 0) pin = argv[i + 1];
    else if (strcmp(argv[i], "--device") == 0) device = argv[i + 1];
    else if (strcmp(argv[i], "--token") == 0) token = argv[i + 1];
    else return usage();
  }
  if (i != argc) return usage();

  cs_store* store = NULL;
  cs_status s = cs_store_open(argv[1], k_schema, &store);
  if (s != CS_OK) {
    fprintf(stderr, "field_note: opening the store failed: %s: %s\n", cs_status_name(s), cs_open_error());
    return 1;
  }
  printf("opened store %s\n", argv[1]);

  /* A visit: 45 minutes, a score, a two-byte signature ("hi" in base64). */
  char* id = NULL;
  s = cs_create(store, "visits",
                "{\"client_id\": \"c-0001\", \"date\": \"2026-11-23\", \"duration_min\": 45,"
                " \"score\": 4.5, \"signature\": {\"base64\": \"aGk=\"}}",
                &id);
  if (s != CS_OK) fail(store, "recording the visit", s);
  printf("recorded visit %s\n", id);

  s = cs_update(store, "visits", id, "{\"note\": \"Visit note (synthetic): shopping done, asked about the ramp.\"}");
  if (s != CS_OK) fail(store, "adding the note", s);

  char* record = NULL;
  s = cs_get(store, "visits", id, &record);
  if (s != CS_OK) fail(store, "reading the visit", s);
  printf("read back: %s\n", record);
  cs_free(record);
  cs_free(id);

  /* A visit recorded by mistake and deleted: reading it is CS_NOT_FOUND, not a failure. */
  char* mistake = NULL;
  s = cs_create(store, "visits", "{\"date\": \"2026-11-24\"}", &mistake);
  if (s != CS_OK) fail(store, "recording the second visit", s);
  s = cs_remove(store, "visits", mistake);
  if (s != CS_OK) fail(store, "deleting the second visit", s);
  s = cs_get(store, "visits", mistake, &record);
  if (s != CS_NOT_FOUND) fail(store, "reading the deleted visit", s == CS_OK ? CS_INTERNAL : s);
  printf("deleted visit %s: %s\n", mistake, cs_status_name(s));
  cs_free(mistake);

  char* conflicts = NULL;
  s = cs_conflicts(store, &conflicts);
  if (s != CS_OK) fail(store, "listing conflicts", s);
  printf("open conflicts: %s\n", conflicts);
  cs_free(conflicts);

  if (!device && !token && !ca && !pin) {
    printf("no server given: not syncing\n");
    cs_store_close(store);
    return 0;
  }
  if (!device || !token || (!ca && !pin)) {
    cs_store_close(store);
    return usage();
  }

  char options[4096] = "{";
  int fits = append_member(options, sizeof options, "device_id", device) &&
             append_member(options, sizeof options, "token", token) &&
             append_member(options, sizeof options, "app_version", "field_note 1.0") &&
             (!host || append_member(options, sizeof options, "host", host)) &&
             (!ca || append_member(options, sizeof options, "ca_file", ca)) &&
             (!pin || append_member(options, sizeof options, "pinned_key_sha256", pin));
  if (port) {
    char* end = NULL;
    long p = strtol(port, &end, 10);
    size_t n = strlen(options);
    if (*port == '\0' || *end != '\0' || p < 1 || p > 65535) {
      cs_store_close(store);
      return usage();
    }
    fits = fits && snprintf(options + n, sizeof options - n, ", \"port\": %ld", p) < (int)(sizeof options - n);
  }
  if (!fits || strlen(options) + 2 > sizeof options) {
    fprintf(stderr, "field_note: the server options are too long\n");
    cs_store_close(store);
    return 2;
  }
  strcat(options, "}");

  unsigned calls = 0;
  char* report = NULL;
  s = cs_sync(store, options, on_progress, &calls, &report);
  if (s != CS_OK) fail(store, "syncing", s);
  printf("synced (%u progress reports): %s\n", calls, report);
  cs_free(report);
  cs_store_close(store);
  return 0;
}
