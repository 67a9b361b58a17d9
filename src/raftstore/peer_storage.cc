#include "raftstore/peer_storage.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "raft/errors.h"
#include "storage/keys.h"

namespace raftkv::raftstore {
namespace {

[[noreturn]] void Panic(const std::string& tag, const std::string& what) {
  std::fprintf(stderr, "%s peer storage: %s\n", tag.c_str(), what.c_str());
  std::abort();
}

}  // namespace

metapb::Region InitialRegion(uint64_t num_stores) {
  metapb::Region r;
  r.set_id(1);
  r.mutable_region_epoch()->set_conf_ver(1);
  r.mutable_region_epoch()->set_version(1);
  for (uint64_t i = 1; i <= num_stores; ++i) {
    metapb::Peer* p = r.add_peers();
    p->set_id(i);
    p->set_store_id(i);
  }
  return r;
}

absl::Status WriteInitialStates(storage::Engine* raft_engine,
                                storage::Engine* kv_engine,
                                const metapb::Region& region) {
  raft_serverpb::RaftLocalState existing;
  absl::StatusOr<bool> found =
      raft_engine->GetProto(storage::RaftStateKey(region.id()), &existing);
  if (!found.ok()) return found.status();
  if (*found) {
    return absl::FailedPreconditionError(absl::StrCat(
        "region ", region.id(), " already has a raft state on this store"));
  }
  raft_serverpb::RaftApplyState apply;
  apply.set_applied_index(kRaftInitLogIndex);
  apply.mutable_truncated_state()->set_index(kRaftInitLogIndex);
  apply.mutable_truncated_state()->set_term(kRaftInitLogTerm);
  raft_serverpb::RegionLocalState region_state;
  region_state.set_state(raft_serverpb::Normal);
  *region_state.mutable_region() = region;
  storage::WriteBatch kv_wb;
  kv_wb.PutProto(storage::ApplyStateKey(region.id()), apply);
  kv_wb.PutProto(storage::RegionStateKey(region.id()), region_state);
  // The kv engine first: a region state without a raft state is an
  // unfinished bootstrap that can be redone; the reverse is not.
  if (absl::Status s = kv_engine->Write(kv_wb, /*sync=*/true); !s.ok()) {
    return s;
  }
  raft_serverpb::RaftLocalState raft_state;
  raft_state.mutable_hard_state()->set_term(kRaftInitLogTerm);
  raft_state.mutable_hard_state()->set_commit(kRaftInitLogIndex);
  raft_state.set_last_index(kRaftInitLogIndex);
  raft_state.set_last_term(kRaftInitLogTerm);
  storage::WriteBatch raft_wb;
  raft_wb.PutProto(storage::RaftStateKey(region.id()), raft_state);
  return raft_engine->Write(raft_wb, /*sync=*/true);
}

absl::StatusOr<std::unique_ptr<PeerStorage>> PeerStorage::Create(
    storage::Engine* raft_engine, storage::Engine* kv_engine,
    const metapb::Region& region, std::string tag) {
  std::unique_ptr<PeerStorage> ps(
      new PeerStorage(raft_engine, kv_engine, region, std::move(tag)));
  absl::StatusOr<bool> found = raft_engine->GetProto(
      storage::RaftStateKey(region.id()), &ps->raft_state_);
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::NotFoundError(
        absl::StrCat("region ", region.id(), " has no raft state"));
  }
  found = kv_engine->GetProto(storage::ApplyStateKey(region.id()),
                              &ps->apply_state_);
  if (!found.ok()) return found.status();
  if (!*found) {
    return absl::NotFoundError(
        absl::StrCat("region ", region.id(), " has no apply state"));
  }
  // A crash between a snapshot's kv writes and its raft-engine write (see
  // raftstore/snap.h) leaves the raft state behind the truncated index: the
  // snapshot is applied, so the log starts after it. Commit and term move
  // up to it (raising the term drops the vote, as hearing of a new term
  // does).
  auto& fix = ps->raft_state_;
  if (fix.last_index() < ps->truncated_index()) {
    fix.set_last_index(ps->truncated_index());
    fix.set_last_term(ps->truncated_term());
  }
  if (fix.hard_state().commit() < ps->truncated_index()) {
    fix.mutable_hard_state()->set_commit(ps->truncated_index());
  }
  if (fix.hard_state().term() < ps->truncated_term()) {
    fix.mutable_hard_state()->set_term(ps->truncated_term());
    fix.mutable_hard_state()->set_vote(0);
  }
  // A commit index that only moved is written without an fsync (see
  // SaveReadyState), so a crash may lose it while the kv engine kept the
  // apply state of entries it had committed: what was applied was
  // committed, so commit moves up to it (the entries themselves were
  // synced before they could commit).
  if (fix.hard_state().commit() < ps->applied_index() &&
      ps->applied_index() <= fix.last_index()) {
    fix.mutable_hard_state()->set_commit(ps->applied_index());
  }
  const auto& rs = ps->raft_state_;
  if (rs.last_index() < ps->truncated_index() ||
      rs.hard_state().commit() > rs.last_index() ||
      ps->applied_index() > rs.hard_state().commit()) {
    return absl::DataLossError(absl::StrCat(
        ps->tag_, " inconsistent states: last index ", rs.last_index(),
        ", commit ", rs.hard_state().commit(), ", applied ",
        ps->applied_index(), ", truncated ", ps->truncated_index()));
  }
  return ps;
}

absl::StatusOr<raft::RaftState> PeerStorage::InitialState() {
  raft::RaftState st;
  st.hard_state = raft_state_.hard_state();
  for (const metapb::Peer& p : region_.peers()) {
    st.conf_state.add_voters(p.id());
  }
  return st;
}

absl::StatusOr<uint64_t> PeerStorage::FirstIndex() {
  return truncated_index() + 1;
}

absl::StatusOr<uint64_t> PeerStorage::LastIndex() {
  return raft_state_.last_index();
}

absl::StatusOr<uint64_t> PeerStorage::Term(uint64_t i) {
  if (i == truncated_index()) return truncated_term();
  if (i < truncated_index())
    return raft::MakeError(raft::ErrorKind::kCompacted);
  if (i > raft_state_.last_index()) {
    return raft::MakeError(raft::ErrorKind::kUnavailable);
  }
  if (i == raft_state_.last_index()) return raft_state_.last_term();
  raftpb::Entry e;
  absl::StatusOr<bool> found =
      raft_engine_->GetProto(storage::RaftLogKey(region_.id(), i), &e);
  if (!found.ok()) return found.status();
  if (!*found || e.index() != i) {
    return absl::DataLossError(
        absl::StrCat(tag_, " log entry ", i, " is missing"));
  }
  return e.term();
}

absl::StatusOr<std::vector<raftpb::Entry>> PeerStorage::Entries(
    uint64_t lo, uint64_t hi, uint64_t max_size) {
  if (lo <= truncated_index()) {
    return raft::MakeError(raft::ErrorKind::kCompacted);
  }
  if (hi > raft_state_.last_index() + 1) {
    return raft::MakeError(
        raft::ErrorKind::kUnavailable,
        absl::StrCat("hi ", hi, " past last index ", raft_state_.last_index()));
  }
  std::vector<raftpb::Entry> out;
  if (lo >= hi) return out;
  auto it = raft_engine_->NewIterator(storage::RaftLogKey(region_.id(), lo),
                                      storage::RaftLogKey(region_.id(), hi));
  uint64_t size = 0;
  uint64_t want = lo;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    raftpb::Entry e;
    if (!e.ParseFromArray(it->value().data(),
                          static_cast<int>(it->value().size()))) {
      return absl::DataLossError(
          absl::StrCat(tag_, " log entry ", want, " does not parse"));
    }
    // A hole means entries were lost: the log cannot be trusted.
    if (e.index() != want) {
      return absl::DataLossError(absl::StrCat(
          tag_, " log entry ", want, " is missing (found ", e.index(), ")"));
    }
    size += raft::EntrySize(e);
    if (!out.empty() && size > max_size) return out;
    out.push_back(std::move(e));
    ++want;
  }
  if (absl::Status s = it->status(); !s.ok()) return s;
  if (want != hi) {
    return absl::DataLossError(
        absl::StrCat(tag_, " log entries [", want, ", ", hi, ") are missing"));
  }
  return out;
}

absl::StatusOr<raftpb::Snapshot> PeerStorage::Snapshot() {
  // A snapshot the log was compacted past is useless: the follower would
  // still miss the entries in between.
  if (generated_.has_value() &&
      generated_->metadata().index() >= truncated_index()) {
    return *generated_;
  }
  if (!generating_ && generate_) {
    generating_ = true;
    generate_();
  }
  return raft::MakeError(raft::ErrorKind::kSnapshotTemporarilyUnavailable,
                         "snapshot is being generated");
}

std::optional<raftpb::Snapshot> PeerStorage::OnSnapshotGenerated(
    absl::StatusOr<raftpb::Snapshot> snap) {
  generating_ = false;
  if (!snap.ok()) return std::nullopt;
  std::optional<raftpb::Snapshot> old = std::move(generated_);
  generated_ = *std::move(snap);
  return old;
}

void PeerStorage::OnSnapshotApplied(const raftpb::Snapshot& snap,
                                    const metapb::Region& region) {
  apply_state_.set_applied_index(snap.metadata().index());
  apply_state_.mutable_truncated_state()->set_index(snap.metadata().index());
  apply_state_.mutable_truncated_state()->set_term(snap.metadata().term());
  region_ = region;
}

void PeerStorage::Append(const std::vector<raftpb::Entry>& entries,
                         storage::WriteBatch* raft_wb) {
  if (entries.empty()) return;
  uint64_t first = truncated_index() + 1;
  uint64_t last = entries.back().index();
  if (last < first) return;
  uint64_t prev_last = raft_state_.last_index();
  if (entries.front().index() > prev_last + 1) {
    Panic(tag_, absl::StrCat("gap appending at ", entries.front().index(),
                             " after ", prev_last));
  }
  for (const raftpb::Entry& e : entries) {
    if (e.index() < first) continue;
    raft_wb->PutProto(storage::RaftLogKey(region_.id(), e.index()), e);
  }
  // Entries after the new last one belong to a conflicting tail.
  if (prev_last > last) {
    raft_wb->DeleteRange(storage::RaftLogKey(region_.id(), last + 1),
                         storage::RaftLogKey(region_.id(), prev_last + 1));
  }
  raft_state_.set_last_index(last);
  raft_state_.set_last_term(entries.back().term());
}

bool PeerStorage::SaveReadyState(const raft::Ready& rd,
                                 storage::WriteBatch* raft_wb) {
  bool changed = false;
  if (!raft::IsEmptySnap(rd.snapshot)) {
    const raftpb::SnapshotMetadata& md = rd.snapshot.metadata();
    if (truncated_index() != md.index() || truncated_term() != md.term()) {
      Panic(tag_, absl::StrCat("persisting snapshot ", md.index(),
                               " before its kv part was applied"));
    }
    // The log now starts after the snapshot: the old one goes whole.
    raft_wb->DeleteRange(storage::RaftLogStartKey(region_.id()),
                         storage::RaftLogEndKey(region_.id()));
    raft_state_.set_last_index(md.index());
    raft_state_.set_last_term(md.term());
    if (raft_state_.hard_state().commit() < md.index()) {
      raft_state_.mutable_hard_state()->set_commit(md.index());
    }
    changed = true;
  }
  if (!rd.entries.empty()) {
    Append(rd.entries, raft_wb);
    changed = true;
  }
  if (!raft::IsEmptyHardState(rd.hard_state)) {
    *raft_state_.mutable_hard_state() = rd.hard_state;
    changed = true;
  }
  if (changed) {
    raft_wb->PutProto(storage::RaftStateKey(region_.id()), raft_state_);
  }
  // The raft core's verdict (entries, a new term or vote), and a snapshot.
  return rd.must_sync || !raft::IsEmptySnap(rd.snapshot);
}

void PeerStorage::ClearMeta(storage::WriteBatch* raft_wb,
                            storage::WriteBatch* kv_wb) {
  uint64_t id = region_.id();
  raft_wb->DeleteRange(storage::RaftLogStartKey(id),
                       storage::RaftLogEndKey(id));
  raft_wb->Delete(storage::RaftStateKey(id));
  kv_wb->Delete(storage::ApplyStateKey(id));
  kv_wb->Delete(storage::RegionStateKey(id));
}

}  // namespace raftkv::raftstore
