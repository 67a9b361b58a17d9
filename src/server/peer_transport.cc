#include "server/peer_transport.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <optional>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "raftpb/raft.pb.h"
#include "raftstore/snap.h"
#include "raftstore/thread_name.h"

namespace raftkv::server {
namespace {

using raft_serverpb::RaftMessage;
using raft_serverpb::SnapshotChunk;
using Clock = std::chrono::steady_clock;

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      s.error_message());
}

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

// Stream ids of snapshot streams: unique in this process, and (seeded from
// the wall clock in microseconds) unlikely to repeat after a restart, so
// that a restarted sender never names its streams like leftover files of
// its previous life on the receiver.
uint64_t NextStreamId() {
  static std::atomic<uint64_t> next{static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count())};
  return next.fetch_add(1, std::memory_order_relaxed);
}

// A channel with a connection of its own (not shared with other channels
// to the same target), gRPC's own reconnect backoff aligned with ours, and
// room for large messages.
std::shared_ptr<grpc::Channel> NewChannel(const std::string& target,
                                          const PeerTransportOptions& o) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(o.min_backoff.count()));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(o.connect_timeout.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(o.max_backoff.count()));
  args.SetMaxReceiveMessageSize(kPeerMaxMessageBytes);
  args.SetMaxSendMessageSize(kPeerMaxMessageBytes);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   args);
}

}  // namespace

std::string PeerUrlTarget(const std::string& url) {
  std::string out = url;
  size_t scheme = out.find("://");
  if (scheme != std::string::npos) out = out.substr(scheme + 3);
  while (!out.empty() && out.back() == '/') out.pop_back();
  return out;
}

// ---------------------------------------------------------------------------
// PeerTransport

struct PeerTransport::Destination {
  uint64_t store_id = 0;
  std::string target;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<serverpb::Peer::Stub> stub;
  std::thread thread;

  mutable std::mutex mu;
  std::condition_variable cv;  // signalled on a new message and on Stop
  bool stopping ABSL_GUARDED_BY(mu) = false;
  // Messages and their serialized sizes.
  std::deque<std::pair<RaftMessage, size_t>> queue ABSL_GUARDED_BY(mu);
  size_t queued_bytes ABSL_GUARDED_BY(mu) = 0;
  PeerSendStats stats ABSL_GUARDED_BY(mu);
  // The context of the open raft stream (or of the one being opened), for
  // Stop to cancel; set and cleared by the sender thread under `mu`.
  grpc::ClientContext* live_ctx ABSL_GUARDED_BY(mu) = nullptr;

  // Sender thread only.
  std::unique_ptr<grpc::ClientContext> ctx;
  serverpb::Done response;
  std::unique_ptr<grpc::ClientWriter<serverpb::RaftMessageBatch>> writer;
  std::chrono::milliseconds backoff{0};
  std::mt19937_64 rng;
  bool down_logged = false;
};

struct PeerTransport::SnapshotStream {
  std::thread thread;
  std::atomic<bool> finished{false};
  std::mutex mu;
  bool cancelled ABSL_GUARDED_BY(mu) = false;
  grpc::ClientContext* ctx ABSL_GUARDED_BY(mu) = nullptr;
};

struct PeerTransport::ForwardCall {
  grpc::ClientContext ctx;
  raft_cmdpb::RaftCmdRequest req;
  raft_cmdpb::RaftCmdResponse resp;
  std::function<void(absl::StatusOr<raft_cmdpb::RaftCmdResponse>)> done;
};

PeerTransport::PeerTransport(uint64_t store_id,
                             std::map<uint64_t, std::string> peer_urls,
                             storage::SnapDir* snap_dir,
                             PeerTransportOptions options)
    : store_id_(store_id), snap_dir_(snap_dir), options_(options) {
  for (auto& [id, url] : peer_urls) {
    if (id == store_id_) continue;
    auto d = std::make_unique<Destination>();
    d->store_id = id;
    d->target = PeerUrlTarget(url);
    d->channel = NewChannel(d->target, options_);
    d->stub = serverpb::Peer::NewStub(d->channel);
    d->backoff = options_.min_backoff;
    d->rng.seed(store_id_ * 1000003u + id);
    dests_.emplace(id, std::move(d));
  }
}

PeerTransport::~PeerTransport() { Stop(); }

absl::Status PeerTransport::Start() {
  std::lock_guard sl(stop_mu_);
  {
    std::lock_guard l(mu_);
    if (state_ != State::kNew) {
      return absl::FailedPreconditionError(
          "peer transport already started or stopped");
    }
    state_ = State::kRunning;
  }
  for (auto& [id, d] : dests_) {
    d->thread = std::thread(&PeerTransport::SenderLoop, this, d.get());
  }
  spdlog::info("[store={}] peer transport started ({} peers)", store_id_,
               dests_.size());
  return absl::OkStatus();
}

void PeerTransport::Stop() {
  std::lock_guard sl(stop_mu_);
  {
    std::lock_guard l(mu_);
    if (state_ == State::kStopped) return;
    state_ = State::kStopped;
  }
  // Raft streams: wake and cancel every sender, then join them.
  for (auto& [id, d] : dests_) {
    std::lock_guard l(d->mu);
    d->stopping = true;
    if (d->live_ctx != nullptr) d->live_ctx->TryCancel();
    d->cv.notify_all();
  }
  for (auto& [id, d] : dests_) {
    if (d->thread.joinable()) d->thread.join();
    // (Left only if Start never ran.)
    std::lock_guard l(d->mu);
    d->stats.dropped += d->queue.size();
    d->queue.clear();
    d->queued_bytes = 0;
  }
  // Snapshot streams: no new one starts once stopped.
  std::list<std::unique_ptr<SnapshotStream>> snapshots;
  {
    std::lock_guard l(mu_);
    snapshots.swap(snapshots_);
  }
  for (auto& s : snapshots) {
    std::lock_guard l(s->mu);
    s->cancelled = true;
    if (s->ctx != nullptr) s->ctx->TryCancel();
  }
  for (auto& s : snapshots) s->thread.join();
  // Forward calls: cancel and wait for their callbacks.
  {
    std::unique_lock l(mu_);
    for (ForwardCall* c : forwards_) c->ctx.TryCancel();
    forwards_done_.wait(l, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return forwards_.empty();
    });
  }
  spdlog::info("[store={}] peer transport stopped", store_id_);
}

absl::Status PeerTransport::Send(RaftMessage msg) {
  uint64_t to = msg.to_peer().store_id();
  auto it = dests_.find(to);
  if (it == dests_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown store ", to));
  }
  Destination* d = it->second.get();
  size_t size = msg.ByteSizeLong();
  std::lock_guard l(d->mu);
  if (d->stopping) {
    ++d->stats.rejected;
    return absl::UnavailableError("peer transport stopped");
  }
  if (d->queue.size() >= options_.max_queued_messages ||
      (!d->queue.empty() &&
       d->queued_bytes + size > options_.max_queued_bytes)) {
    ++d->stats.rejected;
    return absl::ResourceExhaustedError(
        absl::StrCat("send queue to store ", to, " is full"));
  }
  d->queue.emplace_back(std::move(msg), size);
  d->queued_bytes += size;
  ++d->stats.queued;
  if (d->queue.size() == 1) d->cv.notify_one();
  return absl::OkStatus();
}

bool PeerTransport::SleepUnlessStopped(Destination* d,
                                       std::chrono::milliseconds delay) {
  std::unique_lock l(d->mu);
  return !d->cv.wait_for(l, delay, [d]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(d->mu) {
    return d->stopping;
  });
}

bool PeerTransport::Connect(Destination* d) {
  const Clock::time_point deadline = Clock::now() + options_.connect_timeout;
  // A channel already in TRANSIENT_FAILURE retries on its own backoff
  // (aligned with ours); a failure seen after an attempt of this call ends
  // it at once.
  bool attempted = false;
  for (;;) {
    {
      std::lock_guard l(d->mu);
      if (d->stopping) return false;
    }
    grpc_connectivity_state state = d->channel->GetState(true);
    if (state == GRPC_CHANNEL_READY) break;
    if (state == GRPC_CHANNEL_SHUTDOWN) return false;
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE) {
      if (attempted) return false;
    } else {
      attempted = true;
    }
    Clock::time_point now = Clock::now();
    if (now >= deadline) return false;
    // Short slices, so that Stop is noticed quickly.
    auto slice = std::min<Clock::duration>(deadline - now,
                                           std::chrono::milliseconds(50));
    d->channel->WaitForStateChange(state,
                                   std::chrono::system_clock::now() + slice);
  }
  auto ctx = std::make_unique<grpc::ClientContext>();
  {
    std::lock_guard l(d->mu);
    if (d->stopping) return false;
    d->live_ctx = ctx.get();
  }
  d->ctx = std::move(ctx);
  d->response.Clear();
  d->writer = d->stub->Raft(d->ctx.get(), &d->response);
  std::lock_guard l(d->mu);
  ++d->stats.connects;
  return true;
}

void PeerTransport::CloseStream(Destination* d, bool cancel) {
  if (d->writer == nullptr) return;
  if (cancel) d->ctx->TryCancel();
  grpc::Status st = d->writer->Finish();
  if (!cancel && !d->down_logged) {
    d->down_logged = true;
    spdlog::warn("[store={}] raft stream to store {} ({}) broke: {}", store_id_,
                 d->store_id, d->target, st.error_message());
  }
  d->writer.reset();
  {
    std::lock_guard l(d->mu);
    d->live_ctx = nullptr;
  }
  d->ctx.reset();
}

void PeerTransport::SenderLoop(Destination* d) {
  raftstore::SetThreadName("raftkv-peer" + std::to_string(d->store_id));
  serverpb::RaftMessageBatch batch;
  auto next_backoff = [&] {
    // Jittered to [0.5, 1.0] of the current value, which then doubles.
    auto cur = d->backoff.count();
    std::uniform_int_distribution<int64_t> dist(cur / 2, cur);
    std::chrono::milliseconds wait(dist(d->rng));
    d->backoff = std::min(d->backoff * 2, options_.max_backoff);
    return wait;
  };
  for (;;) {
    batch.Clear();
    {
      std::unique_lock l(d->mu);
      d->cv.wait(l, [d]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(d->mu) {
        return d->stopping || !d->queue.empty();
      });
      if (d->stopping) break;
      size_t bytes = 0;
      while (!d->queue.empty() &&
             static_cast<size_t>(batch.msgs_size()) <
                 options_.max_batch_messages &&
             (batch.msgs_size() == 0 ||
              bytes + d->queue.front().second <= options_.max_batch_bytes)) {
        bytes += d->queue.front().second;
        *batch.add_msgs() = std::move(d->queue.front().first);
        d->queue.pop_front();
      }
      d->queued_bytes -= bytes;
    }
    const uint64_t n = static_cast<uint64_t>(batch.msgs_size());
    bool ok = d->writer != nullptr || Connect(d);
    if (ok) {
      ok = d->writer->Write(batch);
      if (!ok) CloseStream(d, /*cancel=*/false);
    } else if (!d->down_logged) {
      d->down_logged = true;
      spdlog::warn("[store={}] cannot connect to store {} ({})", store_id_,
                   d->store_id, d->target);
    }
    {
      std::lock_guard l(d->mu);
      if (ok) {
        ++d->stats.batches;
        d->stats.sent += n;
      } else {
        ++d->stats.failures;
        d->stats.dropped += n;
      }
    }
    if (ok) {
      if (d->down_logged) {
        spdlog::info("[store={}] raft stream to store {} ({}) is up", store_id_,
                     d->store_id, d->target);
      }
      d->down_logged = false;
      d->backoff = options_.min_backoff;
    } else if (!SleepUnlessStopped(d, next_backoff())) {
      break;
    }
  }
  CloseStream(d, /*cancel=*/true);
  std::lock_guard l(d->mu);
  d->stats.dropped += d->queue.size();
  d->queue.clear();
  d->queued_bytes = 0;
}

void PeerTransport::SendSnapshot(RaftMessage msg) {
  std::unique_lock l(mu_);
  if (state_ == State::kStopped) {
    l.unlock();
    DeliverSnapStatus(msg, /*reject=*/true);
    return;
  }
  ReapSnapshotStreams();
  auto s = std::make_unique<SnapshotStream>();
  SnapshotStream* raw = s.get();
  s->thread = std::thread([this, raw, msg = std::move(msg)] {
    raftstore::SetThreadName("raftkv-snapsend");
    absl::Status st = StreamSnapshot(raw, msg);
    if (st.ok()) {
      spdlog::info(
          "[store={}] sent snapshot of region {} at index {} to "
          "store {}",
          store_id_, msg.region_id(),
          msg.message().snapshot().metadata().index(),
          msg.to_peer().store_id());
    } else {
      spdlog::warn("[store={}] snapshot of region {} to store {} failed: {}",
                   store_id_, msg.region_id(), msg.to_peer().store_id(),
                   st.ToString());
    }
    DeliverSnapStatus(msg, /*reject=*/!st.ok());
    raw->finished.store(true);
  });
  snapshots_.push_back(std::move(s));
}

void PeerTransport::ReapSnapshotStreams() {
  for (auto it = snapshots_.begin(); it != snapshots_.end();) {
    if ((*it)->finished.load()) {
      (*it)->thread.join();
      it = snapshots_.erase(it);
    } else {
      ++it;
    }
  }
}

absl::Status PeerTransport::StreamSnapshot(SnapshotStream* s,
                                           const RaftMessage& msg) {
  const uint64_t to = msg.to_peer().store_id();
  auto it = dests_.find(to);
  if (it == dests_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown store ", to));
  }
  if (snap_dir_ == nullptr) {
    return absl::FailedPreconditionError("no snapshot directory");
  }
  // A connection of its own: a large snapshot does not delay raft messages.
  std::unique_ptr<serverpb::Peer::Stub> stub =
      serverpb::Peer::NewStub(NewChannel(it->second->target, options_));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   options_.snapshot_timeout);
  {
    std::lock_guard l(s->mu);
    if (s->cancelled) return absl::CancelledError("peer transport stopped");
    s->ctx = &ctx;
  }
  struct Unregister {
    SnapshotStream* s;
    ~Unregister() {
      std::lock_guard l(s->mu);
      s->ctx = nullptr;
    }
  } unregister{s};  // destroyed before ctx

  raftstore::SnapshotSender sender(snap_dir_, msg, options_.snapshot_chunk_size,
                                   NextStreamId());
  serverpb::Done response;
  std::unique_ptr<grpc::ClientWriter<SnapshotChunk>> writer =
      stub->Snapshot(&ctx, &response);
  absl::Status read_error;
  bool write_failed = false;
  SnapshotChunk chunk;
  for (;;) {
    chunk.Clear();
    absl::StatusOr<bool> more = sender.Next(&chunk);
    if (!more.ok()) {
      read_error = more.status();
      ctx.TryCancel();
      break;
    }
    if (!*more) break;
    if (!writer->Write(chunk)) {
      write_failed = true;
      break;
    }
  }
  if (read_error.ok() && !write_failed) writer->WritesDone();
  grpc::Status st = writer->Finish();
  if (!read_error.ok()) return read_error;
  // The receiver answers OK only once it verified every file and handed
  // the message to its store.
  return FromGrpc(st);
}

void PeerTransport::DeliverSnapStatus(const RaftMessage& msg, bool reject) {
  if (!deliver_local_) return;
  deliver_local_(raftstore::SnapStatusMessage(msg, reject));
}

void PeerTransport::Forward(
    uint64_t store_id, raft_cmdpb::RaftCmdRequest req, int timeout_ms,
    std::function<void(absl::StatusOr<raft_cmdpb::RaftCmdResponse>)> done) {
  auto it = dests_.find(store_id);
  if (it == dests_.end()) {
    done(absl::NotFoundError(absl::StrCat("unknown store ", store_id)));
    return;
  }
  // Only on a connected channel, so that a failure before sending is
  // known as such (the caller may then retry without risk of a second
  // proposal). The raft stream keeps the channel connected.
  if (it->second->channel->GetState(/*try_to_connect=*/true) !=
      GRPC_CHANNEL_READY) {
    done(absl::FailedPreconditionError(
        absl::StrCat("no connection to store ", store_id, ": not sent")));
    return;
  }
  auto* call = new ForwardCall;
  call->req = std::move(req);
  call->done = std::move(done);
  call->ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(std::max(timeout_ms, 0)));
  bool stopped = false;
  {
    std::lock_guard l(mu_);
    if (state_ == State::kStopped) {
      stopped = true;
    } else {
      forwards_.insert(call);
    }
  }
  if (stopped) {
    auto cb = std::move(call->done);
    delete call;
    cb(absl::UnavailableError("peer transport stopped"));
    return;
  }
  const uint64_t to = store_id;
  it->second->stub->async()->Forward(
      &call->ctx, &call->req, &call->resp, [this, call, to](grpc::Status st) {
        if (st.ok()) {
          call->done(std::move(call->resp));
        } else {
          call->done(absl::UnavailableError(absl::StrCat(
              "forwarding to store ", to, " failed (",
              static_cast<int>(st.error_code()), "): ", st.error_message())));
        }
        {
          std::lock_guard l(mu_);
          forwards_.erase(call);
          if (forwards_.empty()) forwards_done_.notify_all();
        }
        delete call;
      });
}

void PeerTransport::FetchMember(
    uint64_t store_id, int timeout_ms,
    std::function<void(absl::StatusOr<serverpb::MemberResponse>)> done) {
  auto it = dests_.find(store_id);
  if (it == dests_.end()) {
    done(absl::NotFoundError(absl::StrCat("unknown store ", store_id)));
    return;
  }
  struct Call {
    grpc::ClientContext ctx;
    serverpb::MemberRequest req;
    serverpb::MemberResponse resp;
  };
  auto call = std::make_shared<Call>();
  call->ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(std::max(timeout_ms, 0)));
  it->second->stub->async()->Member(
      &call->ctx, &call->req, &call->resp,
      [call, done = std::move(done)](grpc::Status st) {
        if (st.ok()) {
          done(std::move(call->resp));
        } else {
          done(absl::UnavailableError(st.error_message()));
        }
      });
}

PeerSendStats PeerTransport::Stats(uint64_t store_id) const {
  auto it = dests_.find(store_id);
  if (it == dests_.end()) return {};
  std::lock_guard l(it->second->mu);
  return it->second->stats;
}

// ---------------------------------------------------------------------------
// PeerService

class PeerService::RaftReactor final
    : public grpc::ServerReadReactor<serverpb::RaftMessageBatch> {
 public:
  explicit RaftReactor(PeerService* service) : service_(service) {
    StartRead(&batch_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The sender closed the stream (or it broke, or was cancelled).
      Finish(grpc::Status::OK);
      return;
    }
    service_->batches_received_.fetch_add(1, std::memory_order_relaxed);
    for (RaftMessage& m : *batch_.mutable_msgs()) {
      service_->DeliverOne(std::move(m));
    }
    batch_.Clear();
    StartRead(&batch_);
  }

  void OnDone() override { delete this; }

 private:
  PeerService* const service_;
  serverpb::RaftMessageBatch batch_;
};

class PeerService::SnapshotReactor final
    : public grpc::ServerReadReactor<SnapshotChunk> {
 public:
  explicit SnapshotReactor(PeerService* service) : service_(service) {
    if (service_->snap_dir_ == nullptr) {
      Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "this member takes no snapshots"));
      return;
    }
    receiver_ =
        std::make_unique<raftstore::SnapshotReceiver>(service_->snap_dir_);
    StartRead(&chunk_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "snapshot stream ended before the snapshot was "
                          "complete"));
      return;
    }
    absl::StatusOr<std::optional<RaftMessage>> got =
        receiver_->Add(std::move(chunk_));
    chunk_.Clear();
    if (!got.ok()) {
      spdlog::warn("[store={}] rejected a snapshot stream: {}",
                   service_->store_id_, got.status().ToString());
      Finish(ToGrpc(got.status()));
      return;
    }
    if (!got->has_value()) {
      StartRead(&chunk_);
      return;
    }
    RaftMessage msg = std::move(**got);
    const uint64_t region_id = msg.region_id();
    const raftpb::Snapshot snap = msg.message().snapshot();
    absl::Status st = msg.to_peer().store_id() == service_->store_id_
                          ? service_->deliver_(std::move(msg))
                          : absl::InvalidArgumentError(absl::StrCat(
                                "snapshot for store ", msg.to_peer().store_id(),
                                ", this is store ", service_->store_id_));
    if (!st.ok()) {
      // The store never sees these files: remove them.
      raftstore::DeleteSnapshotFiles(service_->snap_dir_, /*received=*/true,
                                     region_id, snap);
      Finish(ToGrpc(st.code() == absl::StatusCode::kInvalidArgument
                        ? st
                        : absl::UnavailableError(st.ToString())));
      return;
    }
    spdlog::info("[store={}] received snapshot of region {} at index {}",
                 service_->store_id_, region_id, snap.metadata().index());
    Finish(grpc::Status::OK);
  }

  // Destroys the receiver, which drops the files of an incomplete stream.
  void OnDone() override { delete this; }

 private:
  PeerService* const service_;
  std::unique_ptr<raftstore::SnapshotReceiver> receiver_;
  SnapshotChunk chunk_;
};

PeerService::PeerService(uint64_t store_id, storage::SnapDir* snap_dir,
                         Deliver deliver, ForwardFn forward)
    : store_id_(store_id),
      snap_dir_(snap_dir),
      deliver_(std::move(deliver)),
      forward_(std::move(forward)) {}

void PeerService::DeliverOne(RaftMessage msg) {
  messages_received_.fetch_add(1, std::memory_order_relaxed);
  if (msg.to_peer().store_id() != store_id_ || !deliver_(std::move(msg)).ok()) {
    messages_dropped_.fetch_add(1, std::memory_order_relaxed);
  }
}

grpc::ServerReadReactor<serverpb::RaftMessageBatch>* PeerService::Raft(
    grpc::CallbackServerContext* /*context*/, serverpb::Done* /*response*/) {
  return new RaftReactor(this);
}

grpc::ServerReadReactor<SnapshotChunk>* PeerService::Snapshot(
    grpc::CallbackServerContext* /*context*/, serverpb::Done* /*response*/) {
  return new SnapshotReactor(this);
}

grpc::ServerUnaryReactor* PeerService::Forward(
    grpc::CallbackServerContext* context,
    const raft_cmdpb::RaftCmdRequest* request,
    raft_cmdpb::RaftCmdResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!forward_) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                 "this member does not take forwarded "
                                 "commands"));
    return reactor;
  }
  // Guards against a forward function answering twice (Finish twice would
  // abort inside gRPC).
  auto answered = std::make_shared<std::atomic<bool>>(false);
  forward_(*request,
           [reactor, response, answered](raft_cmdpb::RaftCmdResponse resp) {
             if (answered->exchange(true)) return;
             *response = std::move(resp);
             reactor->Finish(grpc::Status::OK);
           });
  return reactor;
}

grpc::ServerUnaryReactor* PeerService::Member(
    grpc::CallbackServerContext* context,
    const serverpb::MemberRequest* /*request*/,
    serverpb::MemberResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  *response = member_info_;
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace raftkv::server
