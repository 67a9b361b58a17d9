#include "test_util.h"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "raft/types.h"

namespace raftkv::raft::test {

using raftpb::Entry;
using raftpb::Message;

Config TestConfig(uint64_t id, std::vector<uint64_t> peers, int election,
                  int heartbeat, Storage* storage) {
  Config c;
  c.id = id;
  c.peers = std::move(peers);
  c.election_tick = election;
  c.heartbeat_tick = heartbeat;
  c.storage = storage;
  c.max_size_per_msg = kNoLimit;
  return c;
}

TestRaft NewTestRaft(uint64_t id, std::vector<uint64_t> peers, int election,
                     int heartbeat, std::unique_ptr<MemoryStorage> storage,
                     const std::function<void(Config*)>& edit) {
  TestRaft t;
  t.storage = storage ? std::move(storage) : std::make_unique<MemoryStorage>();
  Config c =
      TestConfig(id, std::move(peers), election, heartbeat, t.storage.get());
  if (edit) edit(&c);
  auto r = Raft::Create(c);
  if (!r.ok()) {
    std::cerr << "NewTestRaft: " << r.status() << "\n";
    std::abort();
  }
  t.raft = std::move(r).value();
  return t;
}

TestRaft EntsWithConfig(const std::function<void(Config*)>& edit, uint64_t id,
                        const std::vector<uint64_t>& peers,
                        const std::vector<uint64_t>& terms) {
  auto s = std::make_unique<MemoryStorage>();
  std::vector<Entry> ents;
  for (size_t i = 0; i < terms.size(); ++i) {
    ents.push_back(MakeEntry(i + 1, terms[i]));
  }
  if (!s->Append(std::move(ents)).ok()) std::abort();
  TestRaft t = NewTestRaft(id, peers, 5, 1, std::move(s), edit);
  t.raft->BecomeFollower(terms.empty() ? 0 : terms.back(), kNone);
  return t;
}

TestRaft VotedWithConfig(const std::function<void(Config*)>& edit, uint64_t id,
                         const std::vector<uint64_t>& peers, uint64_t vote,
                         uint64_t term) {
  auto s = std::make_unique<MemoryStorage>();
  raftpb::HardState hs;
  hs.set_vote(vote);
  hs.set_term(term);
  s->SetHardState(hs);
  TestRaft t = NewTestRaft(id, peers, 5, 1, std::move(s), edit);
  t.raft->BecomeFollower(term, kNone);
  return t;
}

Entry MakeEntry(uint64_t index, uint64_t term, std::string data) {
  Entry e;
  e.set_index(index);
  e.set_term(term);
  e.set_data(std::move(data));
  return e;
}

Message MakeMsg(uint64_t from, uint64_t to, raftpb::MessageType type,
                uint64_t term) {
  Message m;
  m.set_from(from);
  m.set_to(to);
  m.set_msg_type(type);
  m.set_term(term);
  return m;
}

std::vector<Entry> NextEnts(Raft* r, MemoryStorage* storage) {
  RaftLog& log = r->raft_log();
  std::vector<Entry> unstable = log.UnstableEntries();
  if (!unstable.empty()) {
    uint64_t li = unstable.back().index(), lt = unstable.back().term();
    EXPECT_TRUE(storage->Append(std::move(unstable)).ok());
    log.StableTo(li, lt);
  }
  std::vector<Entry> ents = log.NextCommittedEntries();
  log.AppliedTo(log.committed());
  return ents;
}

void CommitNoopEntry(Raft* r, MemoryStorage* storage) {
  ASSERT_EQ(r->state(), StateType::kLeader);
  for (uint64_t id : Nodes(*r)) {
    if (id != r->id()) r->SendAppend(id);
  }
  std::vector<Message> msgs = r->ReadMessages();
  for (const Message& m : msgs) {
    ASSERT_EQ(m.msg_type(), raftpb::MsgAppend) << DescribeMessage(m);
    ASSERT_EQ(m.entries_size(), 1) << DescribeMessage(m);
    ASSERT_TRUE(m.entries(0).data().empty()) << DescribeMessage(m);
    ASSERT_TRUE(r->Step(AcceptAndReply(m)).ok());
  }
  r->ReadMessages();  // drop the commit broadcast and anything else
  NextEnts(r, storage);
}

Message AcceptAndReply(const Message& m) {
  Message r;
  r.set_msg_type(raftpb::MsgAppendResponse);
  r.set_from(m.to());
  r.set_to(m.from());
  r.set_term(m.term());
  r.set_index(m.index() + m.entries_size());
  return r;
}

std::string LogString(const RaftLog& log) {
  std::string s = absl::StrCat("committed: ", log.committed(),
                               "\napplied: ", log.applied(), "\n");
  std::vector<Entry> ents = log.AllEntries();
  for (size_t i = 0; i < ents.size(); ++i) {
    absl::StrAppend(&s, "#", i, ": ", DescribeEntry(ents[i]), "\n");
  }
  return s;
}

std::vector<uint64_t> Nodes(const Raft& r) {
  std::vector<uint64_t> ids;
  for (const auto& [id, pr] : r.tracker().progress()) ids.push_back(id);
  return ids;
}

Network::Network(std::vector<PeerSpec> peers,
                 const std::function<void(Config*)>& edit) {
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < peers.size(); ++i) ids.push_back(i + 1);
  for (size_t i = 0; i < peers.size(); ++i) {
    uint64_t id = ids[i];
    PeerSpec& p = peers[i];
    switch (p.kind_) {
      case PeerSpec::Kind::kFresh:
        nodes_[id] = NewTestRaft(id, ids, 10, 1, nullptr, edit);
        break;
      case PeerSpec::Kind::kNode:
        if (p.node_.raft->id() != id) {
          ADD_FAILURE() << "peer at position " << id << " has id "
                        << p.node_.raft->id();
        }
        nodes_[id] = std::move(p.node_);
        break;
      case PeerSpec::Kind::kBlackHole:
        nodes_[id] = TestRaft{};
        break;
    }
  }
}

void Network::Send(std::vector<Message> msgs) {
  std::deque<Message> queue(std::make_move_iterator(msgs.begin()),
                            std::make_move_iterator(msgs.end()));
  while (!queue.empty()) {
    Message m = std::move(queue.front());
    queue.pop_front();
    auto it = nodes_.find(m.to());
    if (it == nodes_.end() || !it->second.raft) continue;
    Raft* r = it->second.raft.get();
    (void)r->Step(std::move(m));
    for (Message& out : Filter(r->ReadMessages())) {
      queue.push_back(std::move(out));
    }
  }
}

std::vector<Message> Network::Filter(std::vector<Message> msgs) {
  std::vector<Message> out;
  for (Message& m : msgs) {
    if (ignore_.count(m.msg_type())) continue;
    if (m.msg_type() == raftpb::MsgHup) {
      ADD_FAILURE() << "MsgHup must never be sent: " << DescribeMessage(m);
      continue;
    }
    auto d = drop_.find({m.from(), m.to()});
    if (d != drop_.end()) {
      std::uniform_real_distribution<double> u(0.0, 1.0);
      if (u(rng_) < d->second) continue;
    }
    if (msg_hook_ && !msg_hook_(m)) continue;
    out.push_back(std::move(m));
  }
  return out;
}

void Network::Cut(uint64_t a, uint64_t b) {
  Drop(a, b, 2.0);  // a probability above 1 always drops
  Drop(b, a, 2.0);
}

void Network::Isolate(uint64_t id) {
  for (const auto& [other, node] : nodes_) {
    if (other != id) Cut(id, other);
  }
}

void Network::Ignore(raftpb::MessageType t) { ignore_.insert(t); }

void Network::Drop(uint64_t from, uint64_t to, double p) {
  drop_[{from, to}] = p;
}

void Network::Recover() {
  drop_.clear();
  ignore_.clear();
}

Raft* Network::raft(uint64_t id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : it->second.raft.get();
}

MemoryStorage* Network::storage(uint64_t id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : it->second.storage.get();
}

void Network::SetPeer(uint64_t id, TestRaft node) {
  nodes_[id] = std::move(node);
}

std::vector<uint64_t> Network::ids() const {
  std::vector<uint64_t> out;
  for (const auto& [id, n] : nodes_) out.push_back(id);
  return out;
}

}  // namespace raftkv::raft::test
