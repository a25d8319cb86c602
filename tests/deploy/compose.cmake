# docker-compose (deploy/compose): no container engine here, so
#  - deploy.compose_config: Debian's docker-compose 1.29 renders the file
#    (`config -q`, in a copy whose .env is .env.example; no engine contacted);
#  - deploy.compose_rules: the file, .env.example, .gitignore and haproxy.cfg
#    follow the project's rules, each checked and reported on its own;
#  - deploy.compose_rules_selftest: every one of those rules can fail: each
#    deliberate defect of rules_selftest.py, on a copy of deploy/compose, is
#    reported by its rule (and no rule is left without one);
#  - deploy.compose_lb: deploy/compose/haproxy.cfg itself runs (Debian's
#    haproxy, a host process on loopback) in front of two real gateways of this
#    build, found through a stub DNS as compose's Docker DNS finds them;
#    WebSockets spread and chat through it, a drained gateway leaves the pool.
set(CHAT_COMPOSE_TESTS ${CMAKE_CURRENT_SOURCE_DIR}/compose)
find_program(CHAT_DEPLOY_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT CHAT_DEPLOY_PYTHON)
  set(CHAT_DEPLOY_PYTHON python3)
endif()
add_test(NAME deploy.compose_config COMMAND bash ${CHAT_COMPOSE_TESTS}/config.sh)
add_test(NAME deploy.compose_rules COMMAND ${CHAT_DEPLOY_PYTHON} ${CHAT_COMPOSE_TESTS}/rules.py)
add_test(NAME deploy.compose_rules_selftest COMMAND ${CHAT_DEPLOY_PYTHON} ${CHAT_COMPOSE_TESTS}/rules_selftest.py)
add_test(NAME deploy.compose_lb COMMAND ${CHAT_DEPLOY_PYTHON} -m unittest -v test_lb
         WORKING_DIRECTORY ${CHAT_COMPOSE_TESTS})
set_tests_properties(deploy.compose_config deploy.compose_rules PROPERTIES
  LABELS deploy TIMEOUT 60
  ENVIRONMENT "CHAT_BIN_DIR=${CMAKE_BINARY_DIR}/bin;PYTHONDONTWRITEBYTECODE=1")
# About 75 runs of rules.py (each with the programs' --help): seconds, more on a busy machine.
set_tests_properties(deploy.compose_rules_selftest PROPERTIES
  LABELS deploy TIMEOUT 120
  ENVIRONMENT "CHAT_BIN_DIR=${CMAKE_BINARY_DIR}/bin;PYTHONDONTWRITEBYTECODE=1")
set_tests_properties(deploy.compose_lb PROPERTIES
  LABELS deploy TIMEOUT 180
  ENVIRONMENT "CHAT_BIN_DIR=${CMAKE_BINARY_DIR}/bin;PYTHONDONTWRITEBYTECODE=1")
