# Container images (deploy/images): deploy/images/build.sh makes the base with
# debootstrap (once; kept in podman's storage) and builds chat:0.9.0 with
# podman, then deploy/images/smoke.sh runs every program from the image, each
# in its own read-only container over mutual TLS, and checks them (see its
# --help). Needs root and network access to the Debian mirror. Measured on the
# build machine (2 CPUs, vfs storage): 3 min 22 s to 3 min 52 s from an empty
# podman storage (base 42 s, build 131-148 s, smoke 29-39 s), about 1.5 min
# with everything cached,
# about 2 min after a new commit (the compile step runs again). Serial: it
# builds with every CPU, and its podman storage is shared.
add_test(NAME deploy.images
         COMMAND bash -c "\"$0\"/build.sh && \"$0\"/smoke.sh" ${CMAKE_SOURCE_DIR}/deploy/images)
set_tests_properties(deploy.images PROPERTIES LABELS deploy TIMEOUT 1800 RUN_SERIAL TRUE)
# The Kubernetes dev overlay played by podman kube play from that image
# (deploy/images/kube-play.sh: what it changes for one machine and why).
# Skipped (77) without deploy/k8s/overlays/dev, kubectl or the image. ~15 s.
add_test(NAME deploy.images_kube_play COMMAND ${CMAKE_SOURCE_DIR}/deploy/images/kube-play.sh)
set_tests_properties(deploy.images_kube_play PROPERTIES LABELS deploy TIMEOUT 600 RUN_SERIAL TRUE
                     DEPENDS deploy.images SKIP_RETURN_CODE 77)
