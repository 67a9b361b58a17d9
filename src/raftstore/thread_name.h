// Names the calling thread (as `top`, `perf` and /proc show it), so that
// profiles of a server tell the driver, the workers and the transport apart.
#pragma once

#include <pthread.h>

#include <string>

namespace raftkv::raftstore {

// Sets the calling thread's name; Linux keeps the first 15 characters.
inline void SetThreadName(const std::string& name) {
  (void)pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace raftkv::raftstore
