// NetworkFilters: the faults the simulated network applies to raft messages
// between stores (client commands bypass them, as in TinyKV's MockTransport).
//
//   partition   the stores are split into two sets; a message from one set
//               to the other is dropped (stores in neither set are not cut);
//   drop        each message is dropped with a probability; like TinyKV's
//               DropFilter the filters stack: k filters pass a message with
//               probability (1 - p)^k;
//   delay       each message is held back a further random time in
//               [min, max], which reorders messages on a link;
//   duplicate   each message is delivered twice with a probability.
//
// Every random choice is drawn from the generator passed in, so the fate of
// a message is a function of the filters and the generator's state.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <vector>

namespace raftkv::sim {

// The faults of an unreliable network (TinyKV's DropFilter, plus delays and
// duplicates).
struct UnreliableFaults {
  // The drop probability of one stacked drop filter.
  double drop = 0.1;
  // Every message is delayed by a further uniform time in [min, max].
  int64_t delay_min_us = 0;
  int64_t delay_max_us = 0;
  double duplicate = 0.0;
};

// A uniform integer in [0, n) (n > 0) from `rng`, the same on every
// platform (unlike std::uniform_int_distribution).
uint64_t UniformInt(std::mt19937_64& rng, uint64_t n);
// A uniform double in [0, 1) from `rng`, the same on every platform.
double UniformUnit(std::mt19937_64& rng);

class NetworkFilters {
 public:
  // Cuts every link between a store of `a` and a store of `b` (replacing any
  // earlier partition). Precondition: `a` and `b` are disjoint.
  void Partition(const std::set<uint64_t>& a, const std::set<uint64_t>& b);
  // Adds one drop filter (stacking) and sets the delay and duplication.
  void AddUnreliable(const UnreliableFaults& faults);
  // Removes every filter: partition, drops, delays and duplicates.
  void Clear();

  // True when a message from store `from` to store `to` crosses the
  // partition.
  bool Cut(uint64_t from, uint64_t to) const;
  // The number of stacked drop filters.
  int drop_filters() const { return static_cast<int>(drops_.size()); }

  // Decides the fate of one message from `from` to `to`: on return
  // `extra_delays` holds one extra delay (microseconds) per copy to deliver;
  // it is empty when the message is dropped.
  void Route(uint64_t from, uint64_t to, std::mt19937_64& rng,
             std::vector<int64_t>* extra_delays) const;

 private:
  // The side (0 or 1) of each store in the partition.
  std::map<uint64_t, int> side_;
  std::vector<double> drops_;
  int64_t delay_min_us_ = 0;
  int64_t delay_max_us_ = 0;
  double duplicate_ = 0.0;
};

}  // namespace raftkv::sim
