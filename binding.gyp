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
        "native/event_thread.cc",
        "native/fault_engine.cc",
        "native/main_loop_reader.cc",
        "native/delivery.cc",
        "native/policy_table.cc",
        "native/policy_parse.cc",
        "native/resolve_fill.cc",
        "native/resolve_move.cc",
        "native/deadlock_guard.cc",
        "native/fill.cc",
        "native/layout.cc",
        "native/read_raw.cc",
        "native/sysinfo.cc",
        "native/wp_check.cc",
        "native/testing.cc",
        "native/move.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
      # CPP_EXCEPTIONS_ALL: a C++ exception that is not a Napi::Error (std::bad_alloc, say) becomes
      # a JS error instead of aborting the process. Our own code catches what it can first.
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags": ["-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      # Never unloaded: a testing.touch thread can outlive the Worker that loaded the addon.
      "ldflags": ["-Wl,-z,nodelete"],
      "conditions": [
        ["OS != 'linux'", {"type": "none"}],
        # The test hooks (fork/kill helpers and the like): only in a checkout, which has test/ (the
        # package does not ship it), and never in a prebuild (prebuilds.sh sets UFFD_TEST_HOOKS=0).
        ["<!(node -p \"+(require('fs').existsSync('test/native/hooks.cc') && process.env.UFFD_TEST_HOOKS !== '0')\")==1", {
          "sources": ["test/native/hooks.cc"],
          "defines": ["UFFD_TEST_HOOKS"]
        }]
      ]
    }
  ]
}
