// Test harness for the raft core: node construction helpers and Network, a
// synchronous, deterministic in-memory network of raft nodes with message
// filters (cut, isolate, ignore, drop, hook).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "raft/raft.h"
#include "raft/storage.h"

namespace raftkv::raft::test {

// A raft node together with the MemoryStorage it reads.
struct TestRaft {
  std::unique_ptr<MemoryStorage> storage;
  std::unique_ptr<Raft> raft;

  Raft* operator->() const { return raft.get(); }
};

// A Config with the given fields, applied index 0, seed 0 (derived from id).
Config TestConfig(uint64_t id, std::vector<uint64_t> peers, int election,
                  int heartbeat, Storage* storage);

// Creates a node; `storage` defaults to a fresh MemoryStorage. `edit` may
// change the config before creation. Aborts the test binary on a config
// error (test setup bug).
TestRaft NewTestRaft(uint64_t id, std::vector<uint64_t> peers, int election,
                     int heartbeat, std::unique_ptr<MemoryStorage> storage = {},
                     const std::function<void(Config*)>& edit = {});

// A node of a 1..n group (peers empty, membership from storage) whose storage
// holds one entry per element of `terms` (entry i+1 has term terms[i]) and a
// hard state at the last term. Used for vote and log-comparison scenarios.
TestRaft EntsWithConfig(const std::function<void(Config*)>& edit, uint64_t id,
                        const std::vector<uint64_t>& peers,
                        const std::vector<uint64_t>& terms);

// A node with an empty log whose storage says it voted for `vote` in `term`.
TestRaft VotedWithConfig(const std::function<void(Config*)>& edit, uint64_t id,
                         const std::vector<uint64_t>& peers, uint64_t vote,
                         uint64_t term);

// Builds an entry (index, term) with optional data.
raftpb::Entry MakeEntry(uint64_t index, uint64_t term, std::string data = {});

// Builds a message of `type` from -> to with the given term.
raftpb::Message MakeMsg(uint64_t from, uint64_t to, raftpb::MessageType type,
                        uint64_t term = 0);

// Persists the node's unstable entries into `storage`, marks them stable,
// then returns the committed-but-unapplied entries and marks them applied.
std::vector<raftpb::Entry> NextEnts(Raft* r, MemoryStorage* storage);

// Moves a freshly elected leader's no-op to commit: sends the pending appends,
// answers each with a success, drops everything else, then persists and
// applies as NextEnts does. Fails the test if an append is not a single no-op.
void CommitNoopEntry(Raft* r, MemoryStorage* storage);

// A successful MsgAppendResponse to `m` (a MsgAppend), acknowledging its last
// entry.
raftpb::Message AcceptAndReply(const raftpb::Message& m);

// Renders a log for comparison: committed, applied, then every entry.
std::string LogString(const RaftLog& log);

// Sorted ids of the members in a node's tracker.
std::vector<uint64_t> Nodes(const Raft& r);

// One slot of a Network: a fresh node, a given node, or a black hole.
class PeerSpec {
 public:
  static PeerSpec Fresh() { return PeerSpec(Kind::kFresh, {}); }
  static PeerSpec BlackHole() { return PeerSpec(Kind::kBlackHole, {}); }
  static PeerSpec Node(TestRaft node) {
    return PeerSpec(Kind::kNode, std::move(node));
  }

 private:
  friend class Network;
  enum class Kind { kFresh, kNode, kBlackHole };
  PeerSpec(Kind kind, TestRaft node) : kind_(kind), node_(std::move(node)) {}
  Kind kind_;
  TestRaft node_;
};

// A group of nodes with ids 1..n (by position) exchanging messages
// synchronously: Send steps the first queued message on its recipient, queues
// that node's filtered output, and repeats until the queue is empty. Fresh
// nodes use election 10, heartbeat 1 and all ids as peers; `edit` may change
// their config. A black hole swallows every message.
class Network {
 public:
  explicit Network(std::vector<PeerSpec> peers,
                   const std::function<void(Config*)>& edit = {});

  // Delivers `msgs` (unfiltered) and everything they cause (filtered).
  void Send(std::vector<raftpb::Message> msgs);
  void Send(raftpb::Message m) { Send(std::vector<raftpb::Message>{m}); }

  // Drops every message between a and b, both ways.
  void Cut(uint64_t a, uint64_t b);
  // Cuts `id` from every other node.
  void Isolate(uint64_t id);
  // Drops every message of type `t`.
  void Ignore(raftpb::MessageType t);
  // Drops messages from -> to with probability `p` (seeded, deterministic).
  void Drop(uint64_t from, uint64_t to, double p);
  // Clears cuts, drops and ignores.
  void Recover();
  // A hook that sees every message passing the filters; false drops it.
  void SetMsgHook(std::function<bool(const raftpb::Message&)> hook) {
    msg_hook_ = std::move(hook);
  }

  // The node with `id`, or null for a black hole.
  Raft* raft(uint64_t id);
  MemoryStorage* storage(uint64_t id);
  // Replaces node `id` (e.g. to restart it from its storage).
  void SetPeer(uint64_t id, TestRaft node);
  std::vector<uint64_t> ids() const;

 private:
  std::vector<raftpb::Message> Filter(std::vector<raftpb::Message> msgs);

  std::map<uint64_t, TestRaft> nodes_;  // black holes hold a null raft
  std::map<std::pair<uint64_t, uint64_t>, double> drop_;
  std::set<raftpb::MessageType> ignore_;
  std::function<bool(const raftpb::Message&)> msg_hook_;
  std::mt19937_64 rng_{42};
};

}  // namespace raftkv::raft::test
