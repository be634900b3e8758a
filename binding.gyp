{
  "targets": [
    {
      "target_name": "virtio_mmio",
      "sources": [
        "native/addon.cc",
        "native/addon_data.cc",
        "native/errors.cc",
        "native/mmio_region.cc",
        "native/dma_memory.cc",
        "native/uio_file.cc",
        "native/epoll_set.cc",
        "native/fd_helpers.cc",
        "native/bench_probes.cc"
      ],
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
    }
  ]
}
