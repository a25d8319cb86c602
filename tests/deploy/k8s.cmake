# Kubernetes manifests (deploy/k8s): rendered offline with kubectl kustomize
# (KUBECONFIG=/dev/null: no cluster is ever contacted), validated against the
# Kubernetes 1.32 API models (npm @kubernetes/client-node, pinned in
# k8s/package-lock.json) and checked against the project's rules. kubectl is
# not a Debian package: the checks fail naming it when it is missing.
set(CHAT_K8S_TESTS ${CMAKE_CURRENT_SOURCE_DIR}/k8s)
add_test(NAME deploy.k8s_build COMMAND bash ${CHAT_K8S_TESTS}/build.sh)
add_test(NAME deploy.k8s_schema COMMAND bash ${CHAT_K8S_TESTS}/schema.sh)
add_test(NAME deploy.k8s_rules COMMAND bash ${CHAT_K8S_TESTS}/rules.sh)
set_tests_properties(deploy.k8s_build PROPERTIES LABELS deploy TIMEOUT 120)
# schema and rules may run npm ci first (when node_modules is missing).
set_tests_properties(deploy.k8s_schema deploy.k8s_rules PROPERTIES LABELS deploy TIMEOUT 400)
