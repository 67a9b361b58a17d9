// TraceHasher: folds the simulator's events into one 64-bit FNV-1a hash, so
// that two runs can be compared (same seed -> same hash) without storing
// their traces.
#pragma once

#include <cstdint>
#include <string_view>

namespace raftkv::sim {

class TraceHasher {
 public:
  // Folds the 8 bytes of `v` (little-endian order) into the hash.
  void Add(uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      AddByte(static_cast<uint8_t>(v >> (8 * i)));
    }
  }
  // Folds the bytes of `s`, then its length (so that concatenations of
  // different splits differ).
  void AddString(std::string_view s) {
    for (char c : s) AddByte(static_cast<uint8_t>(c));
    Add(s.size());
  }
  // The hash of everything folded so far.
  uint64_t hash() const { return hash_; }

 private:
  void AddByte(uint8_t b) {
    hash_ ^= b;
    hash_ *= 0x100000001b3ULL;  // the 64-bit FNV prime
  }
  uint64_t hash_ = 0xcbf29ce484222325ULL;  // the 64-bit FNV offset basis
};

}  // namespace raftkv::sim
