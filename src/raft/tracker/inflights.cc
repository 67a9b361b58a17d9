#include "raft/tracker/inflights.h"

#include <cstdio>
#include <cstdlib>

namespace raftkv::raft {

void Inflights::Add(uint64_t index, uint64_t bytes) {
  if (Full()) {
    std::fprintf(stderr, "Inflights::Add: window is full\n");
    std::abort();
  }
  if (!msgs_.empty() && index <= msgs_.back().index) {
    std::fprintf(stderr, "Inflights::Add: index %lu not above %lu\n",
                 static_cast<unsigned long>(index),
                 static_cast<unsigned long>(msgs_.back().index));
    std::abort();
  }
  msgs_.push_back({index, bytes});
  bytes_ += bytes;
}

void Inflights::ExtendLast(uint64_t index, uint64_t bytes) {
  if (msgs_.empty() || index <= msgs_.back().index) {
    std::fprintf(stderr, "Inflights::ExtendLast: invalid extension\n");
    std::abort();
  }
  msgs_.back().index = index;
  msgs_.back().bytes += bytes;
  bytes_ += bytes;
}

void Inflights::FreeLE(uint64_t to) {
  while (!msgs_.empty() && msgs_.front().index <= to) {
    bytes_ -= msgs_.front().bytes;
    msgs_.pop_front();
  }
}

void Inflights::FreeFirstOne() {
  if (msgs_.empty()) return;
  bytes_ -= msgs_.front().bytes;
  msgs_.pop_front();
}

void Inflights::Reset() {
  msgs_.clear();
  bytes_ = 0;
}

}  // namespace raftkv::raft
