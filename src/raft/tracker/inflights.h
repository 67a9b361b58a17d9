// Inflights: the sliding window of append messages sent to one follower in
// Replicate state and not yet acknowledged. Each entry is the last log index
// a message carried and the bytes it carried. The window is full when it
// holds max_msgs messages or max_bytes bytes; the leader then waits for
// acknowledgements (FreeLE) before sending more.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>

namespace raftkv::raft {

class Inflights {
 public:
  // A window of 256 messages and unlimited bytes.
  Inflights() : Inflights(256, UINT64_MAX) {}
  // Preconditions: max_msgs > 0, max_bytes > 0.
  Inflights(uint64_t max_msgs, uint64_t max_bytes)
      : max_msgs_(max_msgs), max_bytes_(max_bytes) {}

  // Records a message carrying entries up to `index` with `bytes` of
  // entries. Indexes must increase. Aborts if the window is full.
  void Add(uint64_t index, uint64_t bytes);
  // Extends the newest message (merged with a later send) to `index`, adding
  // `bytes`. Precondition: not empty and index > the newest index.
  void ExtendLast(uint64_t index, uint64_t bytes);
  // Frees every message whose index is <= `to` (they were acknowledged).
  void FreeLE(uint64_t to);
  // Frees the oldest message (used to let one probe through a full window).
  void FreeFirstOne();
  // True when no more messages may be sent.
  bool Full() const {
    return msgs_.size() >= max_msgs_ || bytes_ >= max_bytes_;
  }
  size_t Count() const { return msgs_.size(); }
  uint64_t Bytes() const { return bytes_; }
  // The index of the newest message, or 0 when empty.
  uint64_t LastIndex() const { return msgs_.empty() ? 0 : msgs_.back().index; }
  void Reset();

 private:
  struct Inflight {
    uint64_t index;
    uint64_t bytes;
  };
  uint64_t max_msgs_;
  uint64_t max_bytes_;
  uint64_t bytes_ = 0;
  std::deque<Inflight> msgs_;
};

}  // namespace raftkv::raft
