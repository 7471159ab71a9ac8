# Fails when a message the sources mark (tr, trn, translatable) has no translation in
# cs.po: extracts the template with xgettext, then compares with msgcmp (which also
# fails on an untranslated or fuzzy entry).
get_filename_component(pot_dir ${POT} DIRECTORY)
file(MAKE_DIRECTORY ${pot_dir})
execute_process(COMMAND ${XGETTEXT} ${OPTIONS} -o ${POT} ${SOURCES} RESULT_VARIABLE extracted)
if(NOT extracted EQUAL 0)
  message(FATAL_ERROR "xgettext failed (${extracted})")
endif()
execute_process(COMMAND ${MSGCMP} ${PO} ${POT} RESULT_VARIABLE compared)
if(NOT compared EQUAL 0)
  message(FATAL_ERROR "examples/field/po/cs.po lacks translations of messages in the sources (msgcmp above); "
                      "build the target caresync-field-pot and merge it: msgmerge -U cs.po caresync-field.pot")
endif()
