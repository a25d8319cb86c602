# One fuzz.* ctest: runs a libFuzzer target for a bounded time on a scratch
# copy of its seed corpus and fails on a crash, a sanitizer report, a leak or
# a timeout. The corpus grows in the build dir across runs (delete WORK to
# start again from the seeds); the repository's seeds are only read.
#   cmake -DFUZZER= -DNAME= -DSEEDS= -DWORK= -DDICT= -DMAX_LEN= -DSECONDS=
#         -DLOGDIR= -P run_fuzzer.cmake
file(MAKE_DIRECTORY "${WORK}" "${LOGDIR}/artifacts-${NAME}")
file(GLOB seeds "${SEEDS}/*")
file(COPY ${seeds} DESTINATION "${WORK}")
set(log "${LOGDIR}/${NAME}.log")
# UB aborts (built with -fno-sanitize-recover); make the report readable.
set(ENV{UBSAN_OPTIONS} "print_stacktrace=1:halt_on_error=1")
execute_process(
  COMMAND "${FUZZER}" -max_total_time=${SECONDS} -dict=${DICT} -max_len=${MAX_LEN}
          -timeout=25 -rss_limit_mb=2048 -print_final_stats=1
          -artifact_prefix=${LOGDIR}/artifacts-${NAME}/ "${WORK}"
  RESULT_VARIABLE rc OUTPUT_FILE "${log}" ERROR_FILE "${log}")
file(READ "${log}" out)
file(GLOB corpus "${WORK}/*")
list(LENGTH corpus n_corpus)
list(LENGTH seeds n_seeds)
set(runs "?")
set(secs "?")
if(out MATCHES "Done ([0-9]+) runs in ([0-9]+) second")
  set(runs ${CMAKE_MATCH_1})
  set(secs ${CMAKE_MATCH_2})
endif()
set(bad FALSE)
if(NOT rc EQUAL 0 OR out MATCHES "ERROR: [A-Za-z]*Sanitizer|runtime error:|ERROR: libFuzzer"
   OR NOT out MATCHES "Done [0-9]+ runs")
  set(bad TRUE)
endif()
if(bad)
  message("${out}")
  message(FATAL_ERROR "fuzz.${NAME}: FAILED (exit ${rc}); log ${log}, the input that "
                      "failed is in ${LOGDIR}/artifacts-${NAME}/")
endif()
# The final stats, then one line run.sh reads.
string(REGEX MATCHALL "stat::[a-z_]+: *[0-9]+" stats "${out}")
string(REPLACE ";" "\n" stats "${stats}")
message("${stats}")
message("fuzz.${NAME}: Done ${runs} runs in ${secs} second(s), corpus ${n_corpus} files "
        "(${n_seeds} seeds), log ${log}")
