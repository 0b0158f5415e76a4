{
  "targets": [
    {
      "target_name": "userfaultfd",
      "sources": [
        "native/addon.cc",
        "native/args.cc",
        "native/errors.cc",
        "native/uffd.cc",
        "native/mapping.cc",
        "native/pagemap.cc",
        "native/event_ring.cc",
        "native/reader.cc",
        "native/sysinfo.cc",
        "native/testing.cc",
        "native/move.cc",
        "native/move_testing.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      # CPP_EXCEPTIONS_ALL: a C++ exception that is not a Napi::Error (std::bad_alloc, say) becomes
      # a JS error instead of aborting the process. Our own code catches what it can first.
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags": ["-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      # Never unloaded: a testing.touch thread can outlive the Worker that loaded the addon.
      "ldflags": ["-Wl,-z,nodelete"],
      "conditions": [["OS != 'linux'", {"type": "none"}]]
    }
  ]
}
