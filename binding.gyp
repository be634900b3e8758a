{
  "variables": {
    # 1 in a checkout, where bench/ exists; `node-gyp rebuild -- -Dwith_bench=0` leaves it out.
    "with_bench%": "<!(node -p \"+require('fs').existsSync('bench/native/bench_addon.cc')\")"
  },
  "target_defaults": {
    "include_dirs": [
      "<!(node -p \"require('node-addon-api').include_dir\")"
    ],
    "defines": [
      "NAPI_VERSION=8",
      "NODE_ADDON_API_DISABLE_DEPRECATED",
      "NAPI_CPP_EXCEPTIONS",
      "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"
    ],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
    "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter"],
    "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
  },
  "targets": [
    {
      "target_name": "virtio_mmio",
      "sources": [
        "native/addon.cc",
        "native/addon_data.cc",
        "native/errors.cc",
        "native/mmio_region.cc",
        "native/exit_write.cc",
        "native/dma_memory.cc",
        "native/uio_file.cc",
        "native/poll_set.cc",
        "native/fd_helpers.cc"
      ]
    }
  ],
  "conditions": [
    # The benchmark probes are an addon of their own, loaded only by bench/
    # programs. bench/ is not in the package, so an install (and the lab's
    # cross-build, which copies native/ alone) builds the library's addon only.
    ["with_bench==1", {
      "targets": [
        {
          "target_name": "virtio_mmio_bench",
          "include_dirs": ["native"],
          "sources": [
            "bench/native/bench_addon.cc",
            "bench/native/bench_probes.cc",
            "native/addon_data.cc",
            "native/errors.cc"
          ]
        }
      ]
    }]
  ]
}
