#include "sim/client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "storage/keys.h"

namespace raftkv::sim {

namespace {

constexpr uint64_t kRegionId = 1;

bool Writes(const raft_cmdpb::RaftCmdRequest& req) {
  for (const raft_cmdpb::Request& r : req.requests()) {
    if (r.cmd_type() == raft_cmdpb::Put || r.cmd_type() == raft_cmdpb::Delete) {
      return true;
    }
  }
  return false;
}

// Reads the scan's values out of a successful Snap answer.
absl::Status ScanSnap(const raftstore::CmdResult& r, const ScanRange& range,
                      std::string* out) {
  if (r.snap == nullptr || r.response.responses_size() != 1 ||
      r.response.responses(0).cmd_type() != raft_cmdpb::Snap) {
    return absl::InternalError("malformed Snap answer");
  }
  const metapb::Region& region = r.response.responses(0).snap().region();
  std::string lo = std::max(range.start, region.start_key());
  std::string hi = range.end;
  if (!region.end_key().empty() && (hi.empty() || region.end_key() < hi)) {
    hi = region.end_key();
  }
  if (!hi.empty() && hi <= lo) return absl::OkStatus();
  auto it = r.snap->NewIterator(storage::DataStartKey(storage::kCfDefault, lo),
                                storage::DataEndKey(storage::kCfDefault, hi));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    absl::StatusOr<std::string> key =
        storage::DecodeDataKey(storage::kCfDefault, it->key());
    if (!key.ok()) return key.status();
    out->append(it->value());
  }
  return it->status();
}

}  // namespace

KvClient::KvClient(Simulator* sim, uint64_t client_id,
                   const ClientOptions& options, ClientStats* stats)
    : sim_(sim), client_id_(client_id), options_(options), stats_(stats) {
  leader_guess_ = RandomStore();
  epoch_.set_conf_ver(1);
  epoch_.set_version(1);
}

uint64_t KvClient::RandomStore() {
  return 1 + sim_->Random(static_cast<uint64_t>(sim_->config().num_stores));
}

void KvClient::Call(raft_cmdpb::RaftCmdRequest req,
                    std::optional<ScanRange> scan,
                    std::function<void(ClientReply)> done) {
  busy_ = true;
  req_ = std::move(req);
  scan_ = std::move(scan);
  done_ = std::move(done);
  call_time_ = sim_->now();
  raft_cmdpb::RaftRequestHeader* h = req_.mutable_header();
  h->set_region_id(kRegionId);
  if (Writes(req_)) {
    h->set_client_id(client_id_);
    h->set_sequence(next_sequence_++);
  } else {
    h->set_client_id(0);
    h->set_sequence(0);
  }
  if (stats_ != nullptr) ++stats_->calls;
  Attempt();
}

void KvClient::Attempt() {
  if (sim_->now() - call_time_ > options_.give_up_us) {
    if (stats_ != nullptr) ++stats_->gave_up;
    ClientReply r;
    r.status = absl::DeadlineExceededError(
        absl::StrCat("client ", client_id_, " gave up after ",
                     options_.give_up_us / 1000, " ms"));
    Finish(std::move(r));
    return;
  }
  uint64_t attempt = ++attempt_;
  if (stats_ != nullptr) ++stats_->attempts;
  raft_cmdpb::RaftRequestHeader* h = req_.mutable_header();
  h->mutable_peer()->set_id(leader_guess_);
  h->mutable_peer()->set_store_id(leader_guess_);
  *h->mutable_region_epoch() = epoch_;
  sim_->Trace("attempt", {client_id_, h->sequence(), leader_guess_, attempt});
  sim_->SubmitCommand(
      leader_guess_, req_, [this, attempt](raftstore::CmdResult result) {
        // Inside the store: read the snapshot now, answer later.
        ClientReply reply;
        if (!result.response.header().has_error() && scan_.has_value()) {
          reply.status = ScanSnap(result, *scan_, &reply.scan_values);
        }
        result.snap.reset();
        reply.response = std::move(result.response);
        int64_t latency = sim_->processing_delay() +
                          sim_->RandomIn(sim_->config().client_latency_min_us,
                                         sim_->config().client_latency_max_us);
        sim_->After(latency, [this, attempt, reply = std::move(reply)]() {
          OnAnswer(attempt, reply);
        });
      });
  sim_->After(options_.attempt_timeout_us,
              [this, attempt]() { OnTimeout(attempt); });
}

void KvClient::OnTimeout(uint64_t attempt) {
  if (!busy_ || attempt != attempt_) return;
  if (stats_ != nullptr) ++stats_->timeouts;
  sim_->Trace("timeout", {client_id_, attempt});
  // Another store: the leader may have moved or crashed.
  uint64_t n = static_cast<uint64_t>(sim_->config().num_stores);
  if (n > 1) leader_guess_ = (leader_guess_ + sim_->Random(n - 1)) % n + 1;
  Attempt();
}

void KvClient::Retry(int64_t delay_us) {
  uint64_t attempt = ++attempt_;  // the answered attempt is over
  sim_->After(delay_us, [this, attempt]() {
    if (busy_ && attempt == attempt_) Attempt();
  });
}

void KvClient::OnAnswer(uint64_t attempt, ClientReply reply) {
  if (!busy_ || attempt != attempt_) return;  // a stale attempt's answer
  const raft_cmdpb::RaftResponseHeader& h = reply.response.header();
  if (!h.has_error()) {
    sim_->Trace("answer", {client_id_, attempt}, reply.scan_values);
    Finish(std::move(reply));
    return;
  }
  const errorpb::Error& err = h.error();
  if (err.has_not_leader()) {
    uint64_t hint = err.not_leader().leader().store_id();
    sim_->Trace("not-leader", {client_id_, attempt, hint});
    if (hint != 0 && hint != leader_guess_) {
      leader_guess_ = hint;
      Retry(options_.retry_us);
    } else {
      leader_guess_ = RandomStore();
      Retry(options_.no_leader_backoff_us);
    }
    return;
  }
  if (err.has_stale_command() || err.has_epoch_not_match()) {
    sim_->Trace("stale", {client_id_, attempt});
    if (err.has_epoch_not_match() &&
        err.epoch_not_match().current_regions_size() > 0) {
      epoch_ = err.epoch_not_match().current_regions(0).region_epoch();
    }
    Retry(options_.retry_us);
    return;
  }
  sim_->Trace("error", {client_id_, attempt}, err.message());
  reply.status = absl::InternalError(
      absl::StrCat("client ", client_id_, ": error ", err.message()));
  Finish(std::move(reply));
}

void KvClient::Finish(ClientReply reply) {
  busy_ = false;
  ++attempt_;  // late answers and timeouts of this call are stale now
  reply.call_time = call_time_;
  reply.return_time = sim_->now();
  std::function<void(ClientReply)> done = std::move(done_);
  done_ = nullptr;
  done(std::move(reply));
}

}  // namespace raftkv::sim
