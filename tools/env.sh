# Environment shared by the scripts in tools/ (sourced, not run).
export WGPU_BACKEND="${WGPU_BACKEND:-vulkan}"          # skip GL probing
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/featvis-xdg-$(id -u)}"  # silences mesa
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-300}"
