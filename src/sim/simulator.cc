#include "sim/simulator.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "raft/types.h"

namespace raftkv::sim {

namespace {

constexpr uint64_t kRegionId = 1;

// SplitMix64: derives independent seeds from one.
uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace

class Simulator::StoreTransport : public raftstore::Transport {
 public:
  StoreTransport(Simulator* sim, uint64_t from) : sim_(sim), from_(from) {}
  absl::Status Send(raft_serverpb::RaftMessage msg) override {
    return sim_->SendMessage(from_, std::move(msg));
  }

 private:
  Simulator* sim_;
  uint64_t from_;
};

Simulator::Simulator(const SimConfig& config)
    : config_(config),
      rng_(Mix(config.seed)),
      env_(std::make_shared<storage::InMemoryEnv>()) {}

Simulator::~Simulator() {
  // Stores before engines (Node's member order), and both before the queue's
  // closures, which may refer to clients but are never run now.
  nodes_.clear();
}

int64_t Simulator::RandomIn(int64_t lo, int64_t hi) {
  if (hi <= lo) return lo;
  return lo + static_cast<int64_t>(Random(static_cast<uint64_t>(hi - lo + 1)));
}

absl::Status Simulator::Start() {
  for (int i = 1; i <= config_.num_stores; ++i) {
    uint64_t id = static_cast<uint64_t>(i);
    Node& n = nodes_[id];
    n.id = id;
    n.transport = std::make_unique<StoreTransport>(this, id);
    if (absl::Status s = OpenNode(n); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Simulator::OpenNode(Node& n) {
  std::string dir = absl::StrCat("/sim/store", n.id);
  auto raft = storage::Engine::Open({dir + "/raft", env_});
  if (!raft.ok()) return raft.status();
  // The kv engine is written unsynced (it is rebuilt from the raft log);
  // a crash loses every unsynced write, as a power cut would.
  auto kv = storage::Engine::Open({dir + "/kv", env_,
                                   /*lose_unsynced_writes_on_close=*/true});
  if (!kv.ok()) return kv.status();
  n.raft_engine = *std::move(raft);
  n.kv_engine = *std::move(kv);
  if (n.incarnation == 0) {
    metapb::Region region =
        raftstore::InitialRegion(static_cast<uint64_t>(config_.num_stores));
    if (absl::Status s = raftstore::BootstrapStore(
            n.raft_engine.get(), n.kv_engine.get(), 1, n.id, region);
        !s.ok()) {
      return s;
    }
  }
  raftstore::StoreConfig sc;
  sc.store_id = n.id;
  sc.election_ticks = config_.election_ticks;
  sc.heartbeat_ticks = config_.heartbeat_ticks;
  sc.seed = Mix(config_.seed ^ Mix(n.incarnation + 1));
  auto store = raftstore::Store::Open(sc, n.raft_engine.get(),
                                      n.kv_engine.get(), n.transport.get());
  if (!store.ok()) return store.status();
  n.store = *std::move(store);
  ++n.incarnation;
  n.worker_pending = false;
  ScheduleTick(n, RandomIn(1, config_.tick_us));
  return absl::OkStatus();
}

Simulator::Node* Simulator::node(uint64_t id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : &it->second;
}

bool Simulator::IsUp(uint64_t id) const {
  auto it = nodes_.find(id);
  return it != nodes_.end() && it->second.store != nullptr;
}

raftstore::Store* Simulator::store(uint64_t id) {
  Node* n = node(id);
  return n == nullptr ? nullptr : n->store.get();
}

storage::Engine* Simulator::kv_engine(uint64_t id) {
  Node* n = node(id);
  return n == nullptr || n->store == nullptr ? nullptr : n->kv_engine.get();
}

uint64_t Simulator::LeaderStore() {
  uint64_t best = 0, best_term = 0;
  for (auto& [id, n] : nodes_) {
    if (n.store == nullptr) continue;
    raftstore::Peer* p = n.store->GetPeer(kRegionId);
    if (p != nullptr && p->IsLeader() && p->term() > best_term) {
      best = id;
      best_term = p->term();
    }
  }
  return best;
}

void Simulator::Push(Event e) {
  e.seq = next_seq_++;
  queue_.push_back(std::move(e));
  std::push_heap(queue_.begin(), queue_.end(), Later());
}

void Simulator::After(int64_t delay_us, std::function<void()> fn) {
  Event e;
  e.time = now_ + std::max<int64_t>(delay_us, 0);
  e.kind = Kind::kAction;
  e.fn = std::move(fn);
  Push(std::move(e));
}

void Simulator::ScheduleTick(Node& n, int64_t delay_us) {
  Event e;
  e.time = now_ + delay_us;
  e.kind = Kind::kTick;
  e.store = n.id;
  e.incarnation = n.incarnation;
  Push(std::move(e));
}

void Simulator::ScheduleWorker(Node& n) {
  if (n.worker_pending) return;
  n.worker_pending = true;
  Event e;
  e.time = std::max(now_ + config_.worker_delay_us, n.busy_until);
  e.kind = Kind::kWorker;
  e.store = n.id;
  e.incarnation = n.incarnation;
  Push(std::move(e));
}

bool Simulator::RunUntil(int64_t time, const std::function<bool()>& stop) {
  while (!queue_.empty() && queue_.front().time <= time) {
    std::pop_heap(queue_.begin(), queue_.end(), Later());
    Event e = std::move(queue_.back());
    queue_.pop_back();
    now_ = std::max(now_, e.time);
    ++stats_.events;
    Dispatch(e);
    if (stop && stop()) return false;
  }
  now_ = std::max(now_, time);
  return true;
}

bool Simulator::RunUntilTrue(const std::function<bool()>& pred,
                             int64_t deadline) {
  if (pred()) return true;
  RunUntil(deadline, pred);
  return pred();
}

void Simulator::Dispatch(Event& e) {
  if (e.kind == Kind::kAction) {
    e.fn();
    return;
  }
  Node* n = node(e.store);
  bool live =
      n != nullptr && n->store != nullptr && n->incarnation == e.incarnation;
  switch (e.kind) {
    case Kind::kTick:
      if (!live) return;
      ++stats_.ticks;
      Trace("tick", {n->id});
      n->store->Tick();
      ScheduleWorker(*n);
      ScheduleTick(*n, config_.tick_us);
      return;
    case Kind::kWorker:
      if (!live) return;
      n->worker_pending = false;
      RunWorker(*n);
      return;
    case Kind::kDeliver:
      if (!live) {
        ++stats_.messages_dropped;
        TraceMessage("drop-crashed", *e.msg);
        return;
      }
      ++stats_.messages_delivered;
      TraceMessage("deliver", *e.msg);
      if (delivery_hook_) delivery_hook_(*e.msg);
      n->store->Step(std::move(*e.msg));
      ScheduleWorker(*n);
      return;
    case Kind::kAction:
      return;
  }
}

void Simulator::RunWorker(Node& n) {
  ++stats_.worker_passes;
  pass_delay_ = RandomIn(config_.pass_min_us, config_.pass_max_us);
  bool worked = false;
  for (int i = 0; i < 64 && n.store->HandleReadies(); ++i) worked = true;
  if (worked) {
    n.busy_until = now_ + pass_delay_;
    Trace("pass", {n.id});
  }
  pass_delay_ = 0;
  raftstore::Peer* p = n.store->GetPeer(kRegionId);
  if (p != nullptr && p->IsLeader() && leader_terms_.insert(p->term()).second) {
    ++stats_.elections;
    Trace("leader", {n.id, p->term()});
  }
}

void Simulator::Crash(uint64_t id) {
  Node* n = node(id);
  if (n == nullptr || n->store == nullptr) return;
  ++stats_.crashes;
  Trace("crash", {id});
  n->store.reset();
  n->kv_engine.reset();
  n->raft_engine.reset();
  n->worker_pending = false;
  n->busy_until = 0;
  // Events of the old incarnation (ticks, passes, deliveries) are now stale.
  ++n->incarnation;
}

absl::Status Simulator::Restart(uint64_t id) {
  Node* n = node(id);
  if (n == nullptr) return absl::NotFoundError(absl::StrCat("store ", id));
  if (n->store != nullptr) return absl::OkStatus();
  ++stats_.restarts;
  Trace("restart", {id});
  return OpenNode(*n);
}

void Simulator::SubmitCommand(uint64_t id, raft_cmdpb::RaftCmdRequest req,
                              raftstore::Callback cb) {
  int64_t latency =
      RandomIn(config_.client_latency_min_us, config_.client_latency_max_us);
  After(latency, [this, id, req = std::move(req),
                  cb = std::move(cb)]() mutable {
    Node* n = node(id);
    if (n == nullptr || n->store == nullptr) {
      Trace("command-lost", {id});
      return;
    }
    ++stats_.commands_proposed;
    Trace("command", {id, req.header().client_id(), req.header().sequence()});
    n->store->Propose(std::move(req), std::move(cb));
    ScheduleWorker(*n);
  });
}

absl::Status Simulator::SendMessage(uint64_t from,
                                    raft_serverpb::RaftMessage msg) {
  ++stats_.messages_sent;
  uint64_t to = msg.to_peer().store_id();
  Node* n = node(to);
  if (n == nullptr || n->store == nullptr) {
    ++stats_.messages_dropped;
    TraceMessage("drop-down", msg);
    return absl::UnavailableError(absl::StrCat("store ", to, " is down"));
  }
  filters_.Route(from, to, rng_, &delays_scratch_);
  if (delays_scratch_.empty()) {
    ++stats_.messages_dropped;
    TraceMessage("drop", msg);
    return absl::OkStatus();
  }
  int64_t arrival =
      now_ + RandomIn(config_.net_latency_min_us, config_.net_latency_max_us);
  int64_t& last = link_last_[{from, to}];
  arrival = std::max(arrival, last);
  last = arrival;
  TraceMessage("send", msg);
  for (size_t i = 0; i < delays_scratch_.size(); ++i) {
    Event e;
    e.time = arrival + delays_scratch_[i];
    e.kind = Kind::kDeliver;
    e.store = to;
    e.incarnation = n->incarnation;
    if (i + 1 < delays_scratch_.size()) {
      ++stats_.messages_duplicated;
      e.msg = std::make_unique<raft_serverpb::RaftMessage>(msg);
    } else {
      e.msg = std::make_unique<raft_serverpb::RaftMessage>(std::move(msg));
    }
    Push(std::move(e));
  }
  return absl::OkStatus();
}

void Simulator::TraceMessage(std::string_view what,
                             const raft_serverpb::RaftMessage& m) {
  const raftpb::Message& r = m.message();
  Trace(what, {m.from_peer().store_id(), m.to_peer().store_id(),
               static_cast<uint64_t>(r.msg_type()), r.term(), r.log_term(),
               r.index(), r.commit(), static_cast<uint64_t>(r.entries_size()),
               static_cast<uint64_t>(r.reject())});
}

void Simulator::Trace(std::string_view what,
                      std::initializer_list<uint64_t> fields,
                      std::string_view detail) {
  trace_.Add(static_cast<uint64_t>(now_));
  trace_.AddString(what);
  for (uint64_t f : fields) trace_.Add(f);
  if (!detail.empty()) trace_.AddString(detail);
  if (!config_.verbose) return;
  std::string line = absl::StrCat("t=", now_, " ", std::string(what));
  for (uint64_t f : fields) absl::StrAppend(&line, " ", f);
  if (!detail.empty()) absl::StrAppend(&line, " ", std::string(detail));
  std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace raftkv::sim
