// The peer transport over real gRPC on loopback: PeerTransports sending to
// PeerServices that deliver into fake sinks. Covers batching, reconnecting
// after the receiver restarts, Send never blocking on a dead peer,
// snapshot streaming between two SnapDirs (and a corrupt file failing the
// stream), Forward with its deadline, and garbage on the peer port.
#include "server/peer_transport.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/client_unary_call.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "raftstore/peer_storage.h"
#include "raftstore/snap.h"
#include "storage/engine.h"
#include "storage/keys.h"
#include "storage/snap_files.h"

namespace raftkv::server {
namespace {

using raft_serverpb::RaftMessage;
using namespace std::chrono_literals;

// Test options: short backoffs so that reconnecting takes milliseconds.
PeerTransportOptions FastOptions() {
  PeerTransportOptions o;
  o.min_backoff = 10ms;
  o.max_backoff = 100ms;
  o.connect_timeout = 500ms;
  return o;
}

// A heartbeat from store `from` to store `to` whose commit field numbers it.
RaftMessage Msg(uint64_t from, uint64_t to, uint64_t n) {
  RaftMessage m;
  m.set_region_id(1);
  m.mutable_from_peer()->set_id(from);
  m.mutable_from_peer()->set_store_id(from);
  m.mutable_to_peer()->set_id(to);
  m.mutable_to_peer()->set_store_id(to);
  m.mutable_message()->set_msg_type(raftpb::MsgHeartbeat);
  m.mutable_message()->set_from(from);
  m.mutable_message()->set_to(to);
  m.mutable_message()->set_commit(n);
  return m;
}

// Collects delivered messages.
class Sink {
 public:
  absl::Status Put(RaftMessage m) {
    std::lock_guard l(mu_);
    msgs_.push_back(std::move(m));
    cv_.notify_all();
    return absl::OkStatus();
  }
  // Waits until at least `n` messages arrived; false on timeout.
  bool WaitFor(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, timeout, [&] { return msgs_.size() >= n; });
  }
  std::vector<RaftMessage> Messages() {
    std::lock_guard l(mu_);
    return msgs_;
  }
  size_t size() {
    std::lock_guard l(mu_);
    return msgs_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RaftMessage> msgs_;
};

// A PeerService on 127.0.0.1 (port chosen by the system unless given),
// delivering into `sink`.
class PeerNode {
 public:
  PeerNode(uint64_t store_id, storage::SnapDir* snap_dir = nullptr,
           PeerService::ForwardFn forward = nullptr)
      : store_id_(store_id),
        snap_dir_(snap_dir),
        forward_(std::move(forward)) {}
  ~PeerNode() { Shutdown(); }

  void Start(int port = 0) {
    service_ = std::make_unique<PeerService>(
        store_id_, snap_dir_, [this](RaftMessage m) { return sink.Put(m); },
        forward_);
    grpc::ServerBuilder b;
    b.AddListeningPort(absl::StrCat("127.0.0.1:", port),
                       grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(service_.get());
    b.SetMaxReceiveMessageSize(kPeerMaxMessageBytes);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }
  void Shutdown() {
    if (server_ == nullptr) return;
    server_->Shutdown(std::chrono::system_clock::now() + 100ms);
    server_->Wait();
    server_.reset();
  }

  int port() const { return port_; }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_); }
  PeerService* service() { return service_.get(); }

  Sink sink;

 private:
  uint64_t store_id_;
  storage::SnapDir* snap_dir_;
  PeerService::ForwardFn forward_;
  std::unique_ptr<PeerService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// A loopback port nothing listens on (bound, then released).
int DeadPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  close(fd);
  return ntohs(addr.sin_port);
}

// Waits (bounded) until `pred` holds for the counters of `store`, and
// returns them.
template <typename Pred>
PeerSendStats WaitStats(const PeerTransport& t, uint64_t store, Pred pred) {
  PeerSendStats s = t.Stats(store);
  for (int i = 0; i < 300 && !pred(s); ++i) {
    std::this_thread::sleep_for(10ms);
    s = t.Stats(store);
  }
  return s;
}

TEST(PeerUrlTargetTest, StripsSchemeAndSlash) {
  EXPECT_EQ(PeerUrlTarget("http://127.0.0.1:2380"), "127.0.0.1:2380");
  EXPECT_EQ(PeerUrlTarget("http://localhost:2380/"), "localhost:2380");
  EXPECT_EQ(PeerUrlTarget("127.0.0.1:9"), "127.0.0.1:9");
}

TEST(PeerTransportTest, BatchesQueuedMessagesAndKeepsTheirOrder) {
  PeerNode b(2);
  b.Start();
  // Store 3's URL also points at b (store 2): its messages reach the wrong
  // store and must be dropped there.
  PeerTransport a(1, {{1, "http://127.0.0.1:1"}, {2, b.url()}, {3, b.url()}},
                  nullptr, FastOptions());
  EXPECT_TRUE(absl::IsNotFound(a.Send(Msg(1, 4, 0))));
  EXPECT_TRUE(absl::IsNotFound(a.Send(Msg(1, 1, 0))));  // itself

  // Queued before Start: the sender finds all of them at once and sends
  // them in one batch.
  constexpr uint64_t kFirst = 300;
  for (uint64_t i = 0; i < kFirst; ++i) ASSERT_TRUE(a.Send(Msg(1, 2, i)).ok());
  ASSERT_TRUE(a.Start().ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(a.Start()));
  ASSERT_TRUE(b.sink.WaitFor(kFirst, 3s));
  // (The counters move once the write returned, maybe after the delivery.)
  PeerSendStats s =
      WaitStats(a, 2, [](const PeerSendStats& x) { return x.batches > 0; });
  EXPECT_EQ(s.batches, 1u);
  EXPECT_EQ(s.sent, kFirst);
  EXPECT_EQ(s.connects, 1u);
  EXPECT_EQ(b.service()->batches_received(), 1u);

  // More while the stream is open, then one for store 3.
  constexpr uint64_t kTotal = 2300;
  for (uint64_t i = kFirst; i < kTotal; ++i) {
    ASSERT_TRUE(a.Send(Msg(1, 2, i)).ok());
  }
  ASSERT_TRUE(a.Send(Msg(1, 3, 9999)).ok());
  ASSERT_TRUE(b.sink.WaitFor(kTotal, 3s));
  std::vector<RaftMessage> got = b.sink.Messages();
  ASSERT_EQ(got.size(), kTotal);
  for (uint64_t i = 0; i < kTotal; ++i) {
    ASSERT_EQ(got[i].message().commit(), i) << "at " << i;
    ASSERT_EQ(got[i].to_peer().store_id(), 2u);
  }
  // The message for store 3 arrives (on its own stream) and is dropped.
  for (int i = 0; i < 300 && b.service()->messages_dropped() == 0; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(b.service()->messages_dropped(), 1u);
  EXPECT_EQ(b.sink.size(), kTotal);
  s = WaitStats(a, 2, [&](const PeerSendStats& x) { return x.sent == kTotal; });
  EXPECT_EQ(s.sent, kTotal);
  EXPECT_EQ(s.dropped, 0u);
  EXPECT_EQ(s.connects, 1u);  // one long-lived stream
  EXPECT_EQ(b.service()->messages_received(), kTotal + 1);

  a.Stop();
  EXPECT_TRUE(absl::IsUnavailable(a.Send(Msg(1, 2, 0))));
}

TEST(PeerTransportTest, BatchesAreBoundedInBytes) {
  PeerNode b(2);
  b.Start();
  PeerTransportOptions o = FastOptions();
  o.max_batch_bytes = 1 << 20;
  PeerTransport a(1, {{2, b.url()}}, nullptr, o);
  // 20 messages of ~300 KiB, queued before Start: at most 3 per batch.
  for (uint64_t i = 0; i < 20; ++i) {
    RaftMessage m = Msg(1, 2, i);
    m.mutable_message()->add_entries()->set_data(std::string(300 << 10, 'x'));
    ASSERT_TRUE(a.Send(std::move(m)).ok());
  }
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.sink.WaitFor(20, 3s));
  PeerSendStats s =
      WaitStats(a, 2, [](const PeerSendStats& x) { return x.sent == 20; });
  EXPECT_EQ(s.sent, 20u);
  EXPECT_EQ(s.batches, 7u);  // 3+3+3+3+3+3+2
  EXPECT_EQ(b.service()->batches_received(), 7u);
  EXPECT_EQ(b.sink.Messages()[19].message().entries(0).data().size(),
            size_t{300} << 10);
}

TEST(PeerTransportTest, StopBeforeStartDropsTheQueue) {
  PeerTransport a(1, {{2, "http://127.0.0.1:1"}}, nullptr, FastOptions());
  for (uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(a.Send(Msg(1, 2, i)).ok());
  a.Stop();
  EXPECT_EQ(a.Stats(2).dropped, 5u);
  EXPECT_TRUE(absl::IsFailedPrecondition(a.Start()));
  EXPECT_TRUE(absl::IsUnavailable(a.Send(Msg(1, 2, 9))));
  EXPECT_EQ(a.Stats(2).rejected, 1u);
}

TEST(PeerTransportTest, ReconnectsAfterTheReceiverRestarts) {
  PeerNode b(2);
  b.Start();
  const int port = b.port();
  PeerTransport a(1, {{2, b.url()}}, nullptr, FastOptions());
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(a.Send(Msg(1, 2, 1)).ok());
  ASSERT_TRUE(b.sink.WaitFor(1, 3s));

  b.Shutdown();
  // While b is down, sends still succeed (queued) and are lost.
  for (uint64_t i = 0; i < 20; ++i) {
    ASSERT_TRUE(a.Send(Msg(1, 2, 100 + i)).ok());
    std::this_thread::sleep_for(5ms);
  }
  PeerNode b2(2);
  b2.Start(port);
  ASSERT_EQ(b2.port(), port);
  // Keep sending until the new server receives something: the sender must
  // have noticed the broken stream and opened a new one.
  bool arrived = false;
  for (uint64_t i = 0; i < 200 && !arrived; ++i) {
    ASSERT_TRUE(a.Send(Msg(1, 2, 1000 + i)).ok());
    arrived = b2.sink.WaitFor(1, 20ms);
  }
  ASSERT_TRUE(arrived);
  PeerSendStats s = a.Stats(2);
  EXPECT_GE(s.connects, 2u);
  EXPECT_GE(s.failures, 1u);
  EXPECT_GE(s.dropped, 1u);
  // Only messages sent after the restart reach the new server, in order.
  std::vector<RaftMessage> got = b2.sink.Messages();
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_GE(got[i].message().commit(), 100u);
    if (i > 0) {
      EXPECT_GT(got[i].message().commit(), got[i - 1].message().commit());
    }
  }
  a.Stop();
}

TEST(PeerTransportTest, SendNeverBlocksWhenThePeerIsDown) {
  PeerTransportOptions o = FastOptions();
  o.max_queued_messages = 100;
  PeerTransport a(1, {{2, absl::StrCat("http://127.0.0.1:", DeadPort())}},
                  nullptr, o);
  ASSERT_TRUE(a.Start().ok());
  int ok = 0, exhausted = 0;
  for (int i = 0; i < 10'000; ++i) {
    absl::Status st = a.Send(Msg(1, 2, static_cast<uint64_t>(i)));
    if (st.ok()) {
      ++ok;
    } else {
      ASSERT_TRUE(absl::IsResourceExhausted(st)) << st;
      ++exhausted;
    }
  }
  // The burst returned; the bounded queue refused most of it.
  EXPECT_EQ(ok + exhausted, 10'000);
  EXPECT_GT(exhausted, 0);
  PeerSendStats s = a.Stats(2);
  EXPECT_EQ(s.queued, static_cast<uint64_t>(ok));
  EXPECT_EQ(s.rejected, static_cast<uint64_t>(exhausted));
  // Connection attempts fail and the sender drops what it took.
  for (int i = 0; i < 300 && a.Stats(2).failures == 0; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_GE(a.Stats(2).failures, 1u);
  EXPECT_EQ(a.Stats(2).sent, 0u);
  a.Stop();  // bounded even while the sender is reconnecting
  s = a.Stats(2);
  EXPECT_EQ(s.dropped, s.queued);  // everything queued was lost, not sent
}

// Snapshots between two SnapDirs on the real file system.
class PeerSnapshotTest : public testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::path(testing::TempDir()) /
            absl::StrCat("peer_transport_test_", getpid());
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ / "src");
    std::filesystem::create_directories(root_ / "dst");
    kv_ = *storage::Engine::Open({(root_ / "src" / "kv").string(), nullptr});
    src_ = *storage::SnapDir::Open((root_ / "src" / "snap").string(), nullptr);
    dst_ = *storage::SnapDir::Open((root_ / "dst" / "snap").string(), nullptr);
    region_ = raftstore::InitialRegion(2);
    storage::WriteBatch wb;
    std::mt19937_64 rng(7);
    for (int i = 0; i < 2000; ++i) {
      std::string v(200, '\0');
      for (char& c : v) c = static_cast<char>('a' + rng() % 26);
      wb.Put(storage::DataKey(storage::kCfDefault, absl::StrCat("k", i)), v);
    }
    ASSERT_TRUE(kv_->Write(wb, true).ok());
  }
  void TearDown() override {
    kv_.reset();
    src_.reset();
    dst_.reset();
    std::filesystem::remove_all(root_);
  }

  // A MsgSnapshot from peer 1 (store 1) to peer 2 (store 2) of a snapshot
  // generated at (kTerm, index) in the source SnapDir.
  RaftMessage Generate(uint64_t index) {
    auto view = kv_->NewSnapshot();
    auto snap =
        raftstore::GenerateSnapshot(src_.get(), *view, region_, index, kTerm);
    EXPECT_TRUE(snap.ok()) << snap.status();
    RaftMessage m = Msg(1, 2, 0);
    m.set_region_id(region_.id());
    m.mutable_message()->set_msg_type(raftpb::MsgSnapshot);
    m.mutable_message()->set_term(kTerm);
    *m.mutable_message()->mutable_snapshot() = *snap;
    return m;
  }

  // Files of the destination dir whose name starts with `prefix`, ".tmp"
  // ones included.
  std::vector<std::string> RawDstFiles(const std::string& prefix) {
    std::vector<std::string> out;
    for (const auto& e :
         std::filesystem::directory_iterator(root_ / "dst" / "snap")) {
      std::string name = e.path().filename().string();
      if (name.rfind(prefix, 0) == 0) out.push_back(name);
    }
    return out;
  }

  static constexpr uint64_t kTerm = 3;
  std::filesystem::path root_;
  std::unique_ptr<storage::Engine> kv_;
  std::unique_ptr<storage::SnapDir> src_, dst_;
  metapb::Region region_;
};

TEST_F(PeerSnapshotTest, StreamsASnapshotAndReportsTheOutcome) {
  PeerNode b(2, dst_.get());
  b.Start();
  PeerTransportOptions o = FastOptions();
  o.snapshot_chunk_size = 4096;  // many chunks
  PeerTransport a(1, {{2, b.url()}, {5, "http://127.0.0.1:1"}}, src_.get(), o);
  Sink local;
  a.set_deliver_local([&](RaftMessage m) { (void)local.Put(std::move(m)); });
  ASSERT_TRUE(a.Start().ok());

  // 1. A good snapshot: b's store gets the MsgSnapshot, a's store gets an
  // accepting MsgSnapStatus.
  RaftMessage msg = Generate(10);
  a.SendSnapshot(msg);
  ASSERT_TRUE(local.WaitFor(1, 3s));
  RaftMessage status = local.Messages()[0];
  EXPECT_EQ(status.message().msg_type(), raftpb::MsgSnapStatus);
  EXPECT_FALSE(status.message().reject());
  EXPECT_EQ(status.from_peer().id(), 2u);
  EXPECT_EQ(status.to_peer().store_id(), 1u);
  EXPECT_EQ(status.message().from(), 2u);
  EXPECT_EQ(status.message().to(), 1u);
  ASSERT_EQ(b.sink.size(), 1u);
  RaftMessage got = b.sink.Messages()[0];
  EXPECT_EQ(got.message().msg_type(), raftpb::MsgSnapshot);
  EXPECT_EQ(got.message().snapshot().metadata().index(), 10u);
  auto data = raftstore::ParseSnapshotData(got.message().snapshot());
  ASSERT_TRUE(data.ok());
  ASSERT_FALSE(data->receive_tag().empty());
  ASSERT_GT(data->meta().cf_files_size(), 0);
  uint64_t bytes = 0;
  for (const auto& f : data->meta().cf_files()) {
    std::string name =
        raftstore::SnapFileName(raftstore::SnapPrefix(true, region_.id(), kTerm,
                                                      10, data->receive_tag()),
                                f.cf());
    EXPECT_TRUE(dst_->Verify(name, f.size(), f.checksum()).ok()) << name;
    bytes += f.size();
  }
  EXPECT_GT(bytes, 3 * o.snapshot_chunk_size);

  // 2. A corrupt file on the sender: the receiver's checksum check fails
  // the stream, nothing reaches b's store, no partial file remains there,
  // and a's store gets a rejecting MsgSnapStatus.
  RaftMessage bad = Generate(20);
  auto bad_data = raftstore::ParseSnapshotData(bad.message().snapshot());
  ASSERT_TRUE(bad_data.ok());
  const auto& f = bad_data->meta().cf_files(0);
  std::string path = src_->PathOf(raftstore::SnapFileName(
      raftstore::SnapPrefix(false, region_.id(), kTerm, 20), f.cf()));
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(file.is_open()) << path;
    file.seekg(static_cast<std::streamoff>(f.size() / 2));
    char c = 0;
    file.read(&c, 1);
    file.seekp(static_cast<std::streamoff>(f.size() / 2));
    c = static_cast<char>(c ^ 0x5a);
    file.write(&c, 1);
  }
  a.SendSnapshot(bad);
  ASSERT_TRUE(local.WaitFor(2, 3s));
  status = local.Messages()[1];
  EXPECT_EQ(status.message().msg_type(), raftpb::MsgSnapStatus);
  EXPECT_TRUE(status.message().reject());
  EXPECT_EQ(b.sink.size(), 1u);
  EXPECT_TRUE(RawDstFiles(raftstore::SnapPrefix(true, region_.id(), kTerm, 20))
                  .empty());

  // 3. A snapshot for a store without a URL fails at once.
  RaftMessage lost = msg;
  lost.mutable_to_peer()->set_store_id(9);
  a.SendSnapshot(lost);
  ASSERT_TRUE(local.WaitFor(3, 3s));
  EXPECT_TRUE(local.Messages()[2].message().reject());

  // 4. A snapshot to a store that is down fails too.
  RaftMessage down = msg;
  down.mutable_to_peer()->set_store_id(5);
  a.SendSnapshot(down);
  ASSERT_TRUE(local.WaitFor(4, 3s));
  EXPECT_TRUE(local.Messages()[3].message().reject());

  a.Stop();
  // After Stop a snapshot is refused at once.
  a.SendSnapshot(msg);
  ASSERT_EQ(local.size(), 5u);
  EXPECT_TRUE(local.Messages()[4].message().reject());
  EXPECT_EQ(b.sink.size(), 1u);
}

// A forward function answering at once for client 7 (with its sequence as
// the current term) and parking the request of client 9 unanswered.
class ForwardFake {
 public:
  void operator()(raft_cmdpb::RaftCmdRequest req,
                  std::function<void(raft_cmdpb::RaftCmdResponse)> done) {
    if (req.header().client_id() == 9) {
      std::lock_guard l(mu_);
      parked_.push_back(std::move(done));
      return;
    }
    raft_cmdpb::RaftCmdResponse resp;
    resp.mutable_header()->set_current_term(req.header().sequence());
    ++calls;
    done(std::move(resp));
  }
  // Answers every parked request.
  void Release() {
    std::vector<std::function<void(raft_cmdpb::RaftCmdResponse)>> parked;
    {
      std::lock_guard l(mu_);
      parked.swap(parked_);
    }
    for (auto& d : parked) d(raft_cmdpb::RaftCmdResponse());
  }
  size_t parked() {
    std::lock_guard l(mu_);
    return parked_.size();
  }
  std::atomic<int> calls{0};

 private:
  std::mutex mu_;
  std::vector<std::function<void(raft_cmdpb::RaftCmdResponse)>> parked_;
};

raft_cmdpb::RaftCmdRequest Cmd(uint64_t client, uint64_t seq) {
  raft_cmdpb::RaftCmdRequest req;
  req.mutable_header()->set_region_id(1);
  req.mutable_header()->set_client_id(client);
  req.mutable_header()->set_sequence(seq);
  return req;
}

// Calls Forward and waits for its answer.
absl::StatusOr<raft_cmdpb::RaftCmdResponse> ForwardAndWait(
    PeerTransport& t, uint64_t store, raft_cmdpb::RaftCmdRequest req,
    int timeout_ms) {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<absl::StatusOr<raft_cmdpb::RaftCmdResponse>> result;
  int calls = 0;
  t.Forward(store, std::move(req), timeout_ms,
            [&](absl::StatusOr<raft_cmdpb::RaftCmdResponse> r) {
              std::lock_guard l(mu);
              ++calls;
              result = std::move(r);
              cv.notify_all();
            });
  std::unique_lock l(mu);
  EXPECT_TRUE(cv.wait_for(l, 5s, [&] { return result.has_value(); }));
  // Exactly once: no second answer arrives shortly after.
  cv.wait_for(l, 20ms, [&] { return calls > 1; });
  EXPECT_EQ(calls, 1);
  if (!result) return absl::InternalError("no answer");
  return *result;
}

// Forward once the channel to `store` is connected: a call on a channel
// that is not is refused unsent (FailedPrecondition) and starts connecting.
absl::StatusOr<raft_cmdpb::RaftCmdResponse> ForwardWhenConnected(
    PeerTransport& t, uint64_t store, const raft_cmdpb::RaftCmdRequest& req,
    int timeout_ms) {
  absl::StatusOr<raft_cmdpb::RaftCmdResponse> r;
  for (int i = 0; i < 500; ++i) {
    r = ForwardAndWait(t, store, req, timeout_ms);
    if (!absl::IsFailedPrecondition(r.status())) return r;
    std::this_thread::sleep_for(10ms);
  }
  return r;
}

TEST(PeerForwardTest, RoundTripTimeoutAndFailures) {
  auto fake = std::make_shared<ForwardFake>();
  PeerNode b(2, nullptr, [fake](raft_cmdpb::RaftCmdRequest r, auto done) {
    (*fake)(std::move(r), std::move(done));
  });
  b.Start();
  PeerTransport a(
      1, {{2, b.url()}, {3, absl::StrCat("http://127.0.0.1:", DeadPort())}},
      nullptr, FastOptions());
  ASSERT_TRUE(a.Start().ok());

  // Nothing connected the channel yet: refused, and not sent.
  auto r = ForwardAndWait(a, 2, Cmd(7, 41), 2000);
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_EQ(fake->calls.load(), 0);
  r = ForwardWhenConnected(a, 2, Cmd(7, 41), 2000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->header().current_term(), 41u);
  EXPECT_EQ(fake->calls.load(), 1);

  // Parked: the deadline answers Unavailable.
  auto start = std::chrono::steady_clock::now();
  r = ForwardAndWait(a, 2, Cmd(9, 1), 150);
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_GE(std::chrono::steady_clock::now() - start, 140ms);
  EXPECT_EQ(fake->parked(), 1u);
  fake->Release();  // a late answer to a call the client gave up on

  EXPECT_TRUE(absl::IsNotFound(ForwardAndWait(a, 4, Cmd(7, 1), 100).status()));
  // Nobody listens there: never connected, so never sent (asked again
  // after the connection attempts had time to fail).
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(absl::IsFailedPrecondition(
        ForwardAndWait(a, 3, Cmd(7, 1), 1000).status()));
    std::this_thread::sleep_for(20ms);
  }

  // A forward stuck in flight is answered by Stop.
  std::atomic<int> answers{0};
  absl::Status stopped_status;
  a.Forward(2, Cmd(9, 2), 60'000,
            [&](absl::StatusOr<raft_cmdpb::RaftCmdResponse> res) {
              stopped_status = res.status();
              ++answers;
            });
  for (int i = 0; i < 300 && fake->parked() == 0; ++i) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_EQ(fake->parked(), 1u);
  a.Stop();
  EXPECT_EQ(answers.load(), 1);
  EXPECT_TRUE(absl::IsUnavailable(stopped_status)) << stopped_status;
  fake->Release();
  r = ForwardAndWait(a, 2, Cmd(7, 1), 100);
  EXPECT_TRUE(absl::IsUnavailable(r.status()));
}

TEST(PeerForwardTest, ServiceWithoutForwardFunctionIsUnimplemented) {
  PeerNode b(2);
  b.Start();
  PeerTransport a(1, {{2, b.url()}}, nullptr, FastOptions());
  auto r = ForwardWhenConnected(a, 2, Cmd(7, 1), 2000);
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("(12)"), std::string_view::npos)
      << r.status();  // UNIMPLEMENTED
  EXPECT_NE(r.status().message().find("does not take forwarded"),
            std::string_view::npos)
      << r.status();
}

// Writes `bytes` to 127.0.0.1:port on a raw TCP connection, then closes.
void WriteRaw(int port, const std::string& bytes) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  (void)!write(fd, bytes.data(), bytes.size());
  // Give the server a moment to read (and reject) it.
  std::this_thread::sleep_for(20ms);
  close(fd);
}

grpc::ByteBuffer Bytes(const std::string& s) {
  grpc::Slice slice(s);
  return grpc::ByteBuffer(&slice, 1);
}

TEST(PeerGarbageTest, ServiceSurvivesGarbageAndMalformedMessages) {
  const uint64_t seed = std::random_device()();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  auto fake = std::make_shared<ForwardFake>();
  auto env = std::make_shared<storage::InMemoryEnv>();
  auto snap_dir = storage::SnapDir::Open("/snap", env);
  ASSERT_TRUE(snap_dir.ok());
  PeerNode b(2, snap_dir->get(),
             [fake](raft_cmdpb::RaftCmdRequest r, auto done) {
               (*fake)(std::move(r), std::move(done));
             });
  b.Start();

  // Raw junk, and the HTTP/2 preface followed by junk.
  for (int i = 0; i < 5; ++i) {
    std::string junk(1 + rng() % 4096, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    WriteRaw(b.port(), junk);
  }
  std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  std::string junk(512, '\0');
  for (char& c : junk) c = static_cast<char>(rng());
  WriteRaw(b.port(), preface + junk);

  // Well-framed gRPC calls whose payload is not a valid protobuf (field 1,
  // length-delimited, with a length far past the end).
  const std::string malformed("\x0a\xff\xff\xff\xff\x07", 6);
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", b.port()),
                                     grpc::InsecureChannelCredentials());
  for (const char* method :
       {"/raftkv.serverpb.Peer/Raft", "/raftkv.serverpb.Peer/Snapshot"}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 2s);
    grpc::internal::RpcMethod rpc(
        method, grpc::internal::RpcMethod::CLIENT_STREAMING, channel);
    grpc::ByteBuffer response;
    std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> w(
        grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(
            channel.get(), rpc, &ctx, &response));
    grpc::ByteBuffer payload = Bytes(malformed);
    (void)w->Write(payload);
    w->WritesDone();
    grpc::Status st = w->Finish();
    // A Raft stream that ends is fine for the server; a snapshot stream
    // without a valid snapshot is not.
    if (std::string(method).ends_with("Snapshot")) {
      EXPECT_FALSE(st.ok()) << method;
    }
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 2s);
    grpc::internal::RpcMethod rpc("/raftkv.serverpb.Peer/Forward",
                                  grpc::internal::RpcMethod::NORMAL_RPC,
                                  channel);
    grpc::ByteBuffer response;
    grpc::Status st =
        grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
            channel.get(), rpc, &ctx, Bytes(malformed), &response);
    EXPECT_FALSE(st.ok());
  }
  // Well-formed chunks that make no snapshot: data without a head, and a
  // head whose snapshot data does not parse.
  auto stub = serverpb::Peer::NewStub(channel);
  for (int variant = 0; variant < 2; ++variant) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 2s);
    serverpb::Done done;
    auto w = stub->Snapshot(&ctx, &done);
    raft_serverpb::SnapshotChunk chunk;
    if (variant == 0) {
      chunk.set_data("not a head");
    } else {
      *chunk.mutable_message() = Msg(1, 2, 0);
      chunk.mutable_message()->mutable_message()->set_msg_type(
          raftpb::MsgSnapshot);
      chunk.mutable_message()->mutable_message()->mutable_snapshot()->set_data(
          malformed);
      chunk.set_stream_id(1);
    }
    (void)w->Write(chunk);
    w->WritesDone();
    grpc::Status st = w->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << variant << ": " << st.error_message();
  }
  auto left = (*snap_dir)->List("");
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());
  EXPECT_EQ(fake->calls.load(), 0);
  EXPECT_EQ(b.sink.size(), 0u);

  // The service still serves a real transport.
  PeerTransport a(1, {{2, b.url()}}, nullptr, FastOptions());
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(a.Send(Msg(1, 2, 5)).ok());
  ASSERT_TRUE(b.sink.WaitFor(1, 3s));
  EXPECT_EQ(b.sink.Messages()[0].message().commit(), 5u);
  auto r = ForwardAndWait(a, 2, Cmd(7, 77), 2000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->header().current_term(), 77u);
  a.Stop();
}

}  // namespace
}  // namespace raftkv::server
