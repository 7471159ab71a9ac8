# Runs the C example (examples/c/field_note.c) the way a user would and checks its exit
# status and output: a good run, a store it cannot open, a bad command line.
# cmake -DEXAMPLE=path/to/caresync-field-note -DWORK_DIR=dir -P run_c_example.cmake

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(expect_match what text regex)
  if(NOT text MATCHES "${regex}")
    message(FATAL_ERROR "${what} does not match '${regex}':\n${text}")
  endif()
endfunction()

# 1. No server: records, reads back, deletes, lists conflicts; exit 0.
execute_process(COMMAND "${EXAMPLE}" "${WORK_DIR}/field_note.db"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "field_note exited with ${rc}\nstdout:\n${out}\nstderr:\n${err}")
endif()
set(uuid "[0-9a-f]+-[0-9a-f]+-7[0-9a-f]+-[0-9a-f]+-[0-9a-f]+")  # RFC 9562 version 7 (docs/protocol.md, "Record id")
expect_match("stdout" "${out}" "opened store [^\n]*field_note.db\n")
expect_match("stdout" "${out}" "recorded visit (${uuid})\n")
string(REGEX MATCH "recorded visit (${uuid})" ignored "${out}")
set(id "${CMAKE_MATCH_1}")
expect_match("stdout" "${out}" "read back: {\"id\":\"${id}\",\"client_id\":\"c-0001\",\"date\":\"2026-11-23\",\"duration_min\":45,\"note\":\"Visit note \\(synthetic\\): shopping done, asked about the ramp.\",\"score\":4.5,\"signature\":{\"base64\":\"aGk=\"}}\n")
expect_match("stdout" "${out}" "deleted visit ${uuid}: CS_NOT_FOUND\n")
expect_match("stdout" "${out}" "open conflicts: \\[\\]\n")
expect_match("stdout" "${out}" "no server given: not syncing\n$")
if(NOT err STREQUAL "")
  message(FATAL_ERROR "field_note wrote to stderr on success:\n${err}")
endif()

# The store persists: a second run opens it and adds another visit.
execute_process(COMMAND "${EXAMPLE}" "${WORK_DIR}/field_note.db" RESULT_VARIABLE rc OUTPUT_VARIABLE out2)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "field_note's second run exited with ${rc}:\n${out2}")
endif()
string(REGEX MATCH "recorded visit (${uuid})" ignored "${out2}")
if(CMAKE_MATCH_1 STREQUAL id)
  message(FATAL_ERROR "the second run made the same record id ${id}")
endif()

# 2. A store in a directory that does not exist: exit 1 with the library's message.
execute_process(COMMAND "${EXAMPLE}" "${WORK_DIR}/missing/field_note.db"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 1)
  message(FATAL_ERROR "field_note with an unopenable store exited with ${rc}, not 1\n${out}\n${err}")
endif()
expect_match("stderr" "${err}" "field_note: opening the store failed: CS_STORAGE: [^\n]*missing/field_note.db")

# 3. A server half named (no token): exit 2 with the usage line.
execute_process(COMMAND "${EXAMPLE}" "${WORK_DIR}/field_note.db" --device tablet-1 --ca ca.pem
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 2)
  message(FATAL_ERROR "field_note without a token exited with ${rc}, not 2\n${out}\n${err}")
endif()
expect_match("stderr" "${err}" "usage: field_note STORE")
message(STATUS "field_note: record ${id} written, read back, deleted visit not found; failures exit 1 and 2")
