#include "sim/network.h"

namespace raftkv::sim {

uint64_t UniformInt(std::mt19937_64& rng, uint64_t n) { return rng() % n; }

double UniformUnit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

void NetworkFilters::Partition(const std::set<uint64_t>& a,
                               const std::set<uint64_t>& b) {
  side_.clear();
  for (uint64_t s : a) side_[s] = 0;
  for (uint64_t s : b) side_[s] = 1;
}

void NetworkFilters::AddUnreliable(const UnreliableFaults& faults) {
  drops_.push_back(faults.drop);
  delay_min_us_ = faults.delay_min_us;
  delay_max_us_ = faults.delay_max_us;
  duplicate_ = faults.duplicate;
}

void NetworkFilters::Clear() {
  side_.clear();
  drops_.clear();
  delay_min_us_ = delay_max_us_ = 0;
  duplicate_ = 0.0;
}

bool NetworkFilters::Cut(uint64_t from, uint64_t to) const {
  auto f = side_.find(from);
  if (f == side_.end()) return false;
  auto t = side_.find(to);
  return t != side_.end() && t->second != f->second;
}

void NetworkFilters::Route(uint64_t from, uint64_t to, std::mt19937_64& rng,
                           std::vector<int64_t>* extra_delays) const {
  extra_delays->clear();
  if (Cut(from, to)) return;
  for (double p : drops_) {
    if (p > 0 && UniformUnit(rng) < p) return;
  }
  int copies = 1;
  if (duplicate_ > 0 && UniformUnit(rng) < duplicate_) copies = 2;
  for (int i = 0; i < copies; ++i) {
    int64_t d = delay_min_us_;
    if (delay_max_us_ > delay_min_us_) {
      d += static_cast<int64_t>(UniformInt(
          rng, static_cast<uint64_t>(delay_max_us_ - delay_min_us_ + 1)));
    }
    extra_delays->push_back(d);
  }
}

}  // namespace raftkv::sim
