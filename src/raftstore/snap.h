// Region snapshots in the raftstore: what a snapshot holds, how its files
// are named, how they travel in chunks, and how they are applied.
//
// A region snapshot at (index, term) is a raftpb::Snapshot whose data is a
// RaftSnapshotData (raft_serverpb.proto): the region, and the metas of its
// files. The files are SST files (storage/snap_files.h) of the region's
// key range in each column family, plus one of the region's exactly-once
// table ("dedup"), so that a replica restored from a snapshot still
// recognizes retried commands. Files live in the store's SnapDir:
//   gen_<region>_<term>_<index>_<cf>.sst        generated here, to send;
//   rcv_<region>_<term>_<index>_<tag>_<cf>.sst  received, to apply.
// The receive tag (sender peer, the MsgSnapshot's term, the transport's
// stream id) keeps two streams of snapshots with the same region, term and
// index (say, from two successive leaders) from sharing files; the receiver
// records it in the delivered message's RaftSnapshotData.receive_tag, and
// an Applying region state keeps it for a restart.
//
// Transfer (Transport::SendSnapshot). The sender's transport reads chunks
// from a SnapshotSender and the receiver's feeds them to a
// SnapshotReceiver, which writes each file through a SnapFileWriter and
// verifies its size and CRC32C; only a complete, verified snapshot yields
// the MsgSnapshot for the receiving store. Memory on both sides is bounded
// by the chunk size.
//
// Apply (receiver, Peer). Crash-safe order, kv engine first and raft engine
// last:
//   1. kv, synced: RegionLocalState{Applying, region} and
//      RaftApplyState{applied = truncated = (index, term)};
//   2. kv: clear the region's ranges, ingest the files (ApplySnapshotFiles);
//   3. kv, synced: RegionLocalState{Normal, region};
//   4. raft, synced (the next group commit): the old log is deleted and
//      RaftLocalState says the log ends at (index, term) (plus entries).
// A crash after 1 and before 3 leaves the region Applying: on restart the
// store applies the kept rcv_ files again (2 and 3 are idempotent). A crash
// after 3 and before 4 leaves a raft state behind the truncated index:
// PeerStorage::Create moves it up to the truncated state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raftpb/raft.pb.h"
#include "storage/engine.h"
#include "storage/snap_files.h"
#include "storepb/metapb.pb.h"
#include "storepb/raft_serverpb.pb.h"

namespace raftkv::raftstore {

// The cf label of the exactly-once table's file.
inline constexpr char kDedupCf[] = "dedup";

// The file-name prefix of a snapshot: "gen_..." (generated) or "rcv_..."
// (received), "<kind>_<region>_<term>_<index>", followed for a received
// snapshot with a non-empty `tag` by "_<tag>".
std::string SnapPrefix(bool received, uint64_t region_id, uint64_t term,
                       uint64_t index, const std::string& tag = "");
// The file name of `cf` within a snapshot with `prefix` (what
// SnapDir::WriteSstFiles names it).
std::string SnapFileName(const std::string& prefix, const std::string& cf);

// The ranges a snapshot of `region` covers: the region's keys in "default",
// "lock" and "write", and its exactly-once table (cf label kDedupCf).
std::vector<storage::SnapRange> RegionSnapRanges(const metapb::Region& region);

// Parses a region snapshot's data. Errors: InvalidArgument if malformed.
absl::StatusOr<raft_serverpb::RaftSnapshotData> ParseSnapshotData(
    const raftpb::Snapshot& snap);

// Writes the files of a snapshot of `region` from `kv_snap` (a consistent
// view of the kv engine at applied index `index`) and returns the
// raftpb::Snapshot describing it (metadata: index, term, the region's
// peers as voters). Runs off the raft loop. Errors: I/O errors.
absl::StatusOr<raftpb::Snapshot> GenerateSnapshot(
    storage::SnapDir* dir, const storage::Snapshot& kv_snap,
    const metapb::Region& region, uint64_t index, uint64_t term);

// Step 2 of the apply: clears every range of `region` (RegionSnapRanges) in
// `kv` and ingests the received files of the snapshot at (term, index) from
// `dir`. Idempotent. `expected_files` is the number of files the snapshot
// has, or -1 when unknown (a restart finishing an interrupted apply: the
// files there are the complete set, since a snapshot reaches raft only
// whole and its files go only after its raft part is persisted). Errors:
// NotFound if a file is missing; DataLoss if one is corrupt; I/O errors.
absl::Status ApplySnapshotFiles(storage::Engine* kv, storage::SnapDir* dir,
                                const metapb::Region& region, uint64_t term,
                                uint64_t index, int expected_files,
                                const std::string& tag = "");

// The report a transport hands the SENDING store once the stream of
// MsgSnapshot `msg` ended (Transport::SendSnapshot): a MsgSnapStatus from
// msg.to_peer() to msg.from_peer(), `reject` when the transfer failed.
raft_serverpb::RaftMessage SnapStatusMessage(
    const raft_serverpb::RaftMessage& msg, bool reject);

// Deletes the files of a snapshot (generated or received; a received one
// with a receive tag loses only that stream's files).
void DeleteSnapshotFiles(storage::SnapDir* dir, bool received,
                         uint64_t region_id, const raftpb::Snapshot& snap);

// Cuts an outgoing MsgSnapshot into chunks. Not thread-safe; may run on
// any thread (the files are read lazily, a chunk at a time).
class SnapshotSender {
 public:
  // `msg` must carry a MsgSnapshot whose data is a RaftSnapshotData with
  // files generated in `dir`. `chunk_size` > 0.
  // `stream_id` goes in the head chunk (see SnapshotChunk.stream_id).
  SnapshotSender(storage::SnapDir* dir, raft_serverpb::RaftMessage msg,
                 size_t chunk_size, uint64_t stream_id = 0);
  const raft_serverpb::RaftMessage& message() const { return msg_; }
  // Fills the next chunk; returns false when the stream is complete.
  // Errors: InvalidArgument for malformed snapshot data; NotFound if a file
  // is gone (a newer snapshot replaced it); I/O errors.
  absl::StatusOr<bool> Next(raft_serverpb::SnapshotChunk* chunk);

 private:
  storage::SnapDir* dir_;
  raft_serverpb::RaftMessage msg_;
  size_t chunk_size_;
  uint64_t stream_id_;
  bool sent_head_ = false;
  raft_serverpb::RaftSnapshotData data_;
  int file_ = 0;  // the file being read
  std::unique_ptr<storage::SnapFileReader> reader_;
  uint64_t left_ = 0;  // bytes of the current file still to send
};

// Assembles an incoming snapshot stream into verified rcv_ files.
class SnapshotReceiver {
 public:
  explicit SnapshotReceiver(storage::SnapDir* dir) : dir_(dir) {}
  // Drops the partial files unless the stream completed.
  ~SnapshotReceiver();
  // Takes the next chunk. Returns the MsgSnapshot once the last file is
  // complete and verified (its RaftSnapshotData now carrying the receive
  // tag), nullopt while more is expected. Errors:
  // InvalidArgument for a malformed stream (no head first, bytes past the
  // end, malformed data); DataLoss on a size or checksum mismatch; I/O
  // errors. After an error the receiver is unusable (drop it).
  absl::StatusOr<std::optional<raft_serverpb::RaftMessage>> Add(
      raft_serverpb::SnapshotChunk chunk);

 private:
  absl::Status OpenNext();

  storage::SnapDir* dir_;
  bool have_head_ = false;
  bool complete_ = false;
  raft_serverpb::RaftMessage msg_;
  raft_serverpb::RaftSnapshotData data_;
  std::string tag_;
  std::string prefix_;
  int file_ = 0;
  uint64_t left_ = 0;
  std::unique_ptr<storage::SnapFileWriter> writer_;
};

}  // namespace raftkv::raftstore
