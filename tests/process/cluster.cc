#include "process/cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace raftkv::process_test {
namespace {

// The tests' sync gRPC calls fail fast while a channel reconnects, and then
// nothing polls the connection attempt but gRPC's backup poller, every 5 s
// by default: a member that was not up yet, or restarted, would stay
// unreachable that long. Set before main, so before gRPC reads it.
const bool kBackupPollSet = [] {
  setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "100", 0);
  return true;
}();

std::string FromEnvOr(const char* var, const char* built) {
  const char* env = std::getenv(var);
  std::string path = env != nullptr && env[0] != '\0' ? env : built;
  if (path.empty() || access(path.c_str(), X_OK) != 0) return "";
  return path;
}

// Ports that were free a moment ago: bound together (so they differ), then
// released.
std::vector<int> FreePorts(int n) {
  std::vector<int> fds, ports;
  for (int i = 0; i < n; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) std::abort();
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      std::perror("FreePorts");
      std::abort();
    }
    fds.push_back(fd);
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int fd : fds) close(fd);
  return ports;
}

// A NULL-terminated argv/envp over `strings` (which must outlive it).
std::vector<char*> CArray(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::string ServerBinary() {
  return FromEnvOr("RAFTKV_SERVER_BIN", RAFTKV_SERVER_BIN);
}
std::string CliBinary() { return FromEnvOr("RAFTKV_CLI_BIN", RAFTKV_CLI_BIN); }

std::unique_ptr<grpc::ClientContext> ContextWithTimeout(
    std::chrono::milliseconds timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  return ctx;
}

CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::vector<std::string>& extra_env,
                         const std::string& stdin_text,
                         std::chrono::milliseconds timeout) {
  CommandResult result;
  std::vector<std::string> args = argv;
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> c_args = CArray(args);
  std::vector<char*> c_env = CArray(env);
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 ||
      pipe2(err, O_CLOEXEC) != 0) {
    result.err = "pipe failed";
    return result;
  }
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    execve(c_args[0], c_args.data(), c_env.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (pid < 0) {
    close(in[1]);
    close(out[0]);
    close(err[0]);
    result.err = "fork failed";
    return result;
  }
  // Feed stdin (small texts: the pipe buffer holds them), then close it.
  size_t written = 0;
  while (written < stdin_text.size()) {
    ssize_t n =
        write(in[1], stdin_text.data() + written, stdin_text.size() - written);
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  close(in[1]);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      break;
    }
    int r = poll(fds, 2, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    for (int k = 0; k < 2; ++k) {
      if (fds[k].fd < 0 || fds[k].revents == 0) continue;
      char buf[4096];
      ssize_t n = read(fds[k].fd, buf, sizeof(buf));
      if (n <= 0) {
        close(fds[k].fd);
        fds[k].fd = -1;
        --open_fds;
      } else {
        (k == 0 ? result.out : result.err).append(buf, n);
      }
    }
  }
  for (pollfd& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  if (result.timed_out) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!result.timed_out && WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  }
  return result;
}

Cluster::Cluster(ClusterOptions options)
    : options_(std::move(options)), start_(std::chrono::steady_clock::now()) {
  char tmpl[] = "/tmp/raftkv-process-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  root_ = tmpl;
  std::vector<int> ports = FreePorts(2 * options_.size);
  for (int i = 0; i < options_.size; ++i) {
    Member m;
    m.name = absl::StrCat("n", i + 1);
    m.client_port = ports[2 * i];
    m.peer_port = ports[2 * i + 1];
    m.data_dir = absl::StrCat(root_, "/", m.name);
    m.log_path = absl::StrCat(root_, "/", m.name, ".log");
    members_.push_back(std::move(m));
  }
  // Every channel now, so that client threads never create one.
  for (int i = 0; i < options_.size; ++i) Channel(i);
  watchdog_ = std::thread([this] { Watchdog(); });
}

Cluster::~Cluster() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    KillAllLocked();
  }
  cv_.notify_all();
  watchdog_.join();
  if (::testing::Test::HasFailure()) DumpLogs();
  std::error_code ec;
  std::filesystem::remove_all(root_, ec);
}

void Cluster::Watchdog() {
  std::unique_lock<std::mutex> lock(mu_);
  if (cv_.wait_for(lock, options_.test_timeout, [this] { return done_; })) {
    return;
  }
  std::fprintf(stderr,
               "process test exceeded its bound of %lld s: killing the "
               "cluster\n",
               static_cast<long long>(options_.test_timeout.count()));
  KillAllLocked();
  lock.unlock();
  DumpLogs();
  std::error_code ec;
  std::filesystem::remove_all(root_, ec);
  std::fflush(stderr);
  std::_Exit(1);
}

void Cluster::KillAllLocked() {
  for (Member& m : members_) {
    if (m.pid > 0) {
      kill(m.pid, SIGKILL);
      waitpid(m.pid, nullptr, 0);
      m.pid = -1;
    }
  }
}

void Cluster::Start(int i) {
  Member& m = members_[i];
  std::vector<std::string> peers;
  for (const Member& p : members_) {
    peers.push_back(absl::StrCat(p.name, "=http://127.0.0.1:", p.peer_port));
  }
  std::string client_url = absl::StrCat("http://127.0.0.1:", m.client_port);
  std::string peer_url = absl::StrCat("http://127.0.0.1:", m.peer_port);
  std::vector<std::string> args = {
      ServerBinary(),
      "--name=" + m.name,
      "--data-dir=" + m.data_dir,
      "--listen-client-urls=" + client_url,
      "--advertise-client-urls=" + client_url,
      "--listen-peer-urls=" + peer_url,
      "--initial-advertise-peer-urls=" + peer_url,
      "--initial-cluster=" + absl::StrJoin(peers, ","),
      "--initial-cluster-state=new",
      "--initial-cluster-token=raftkv-process-test",
      absl::StrCat("--heartbeat-interval=", options_.heartbeat_ms),
      absl::StrCat("--election-timeout=", options_.election_ms),
      "--log-level=" + options_.log_level,
  };
  std::vector<char*> c_args = CArray(args);
  int log_fd =
      open(m.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log_fd < 0 || null_fd < 0) {
    std::perror("open log");
    std::abort();
  }
  const std::string banner =
      absl::StrCat("==== start: ", absl::StrJoin(args, " "), "\n");
  if (write(log_fd, banner.data(), banner.size()) < 0) std::abort();
  const pid_t parent = getpid();
  std::lock_guard<std::mutex> lock(mu_);
  if (m.pid > 0) {
    std::fprintf(stderr, "Start(%d): already running\n", i);
    std::abort();
  }
  pid_t pid = fork();
  if (pid == 0) {
    // Only async-signal-safe calls until execv.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execv(c_args[0], c_args.data());
    _exit(127);
  }
  close(log_fd);
  close(null_fd);
  if (pid < 0) {
    std::perror("fork");
    std::abort();
  }
  m.pid = pid;
}

void Cluster::StartAll() {
  for (int i = 0; i < size(); ++i) Start(i);
}

void Cluster::Signal(int i, int sig) {
  std::lock_guard<std::mutex> lock(mu_);
  if (members_[i].pid > 0) kill(members_[i].pid, sig);
}

void Cluster::Kill(int i) {
  std::lock_guard<std::mutex> lock(mu_);
  Member& m = members_[i];
  if (m.pid > 0) {
    kill(m.pid, SIGKILL);
    waitpid(m.pid, nullptr, 0);
    m.pid = -1;
  }
}

std::optional<int> Cluster::Terminate(int i,
                                      std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> lock(mu_);
  Member& m = members_[i];
  if (m.pid <= 0) return std::nullopt;
  kill(m.pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    pid_t r = waitpid(m.pid, &status, WNOHANG);
    if (r == m.pid) {
      m.pid = -1;
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(m.pid, SIGKILL);
  waitpid(m.pid, nullptr, 0);
  m.pid = -1;
  return std::nullopt;
}

bool Cluster::Running(int i) {
  std::lock_guard<std::mutex> lock(mu_);
  Member& m = members_[i];
  if (m.pid <= 0) return false;
  int status = 0;
  if (waitpid(m.pid, &status, WNOHANG) == m.pid) {
    m.pid = -1;
    return false;
  }
  return true;
}

std::string Cluster::ClientAddress(int i) const {
  return absl::StrCat("127.0.0.1:", members_[i].client_port);
}
std::string Cluster::ClientUrl(int i) const {
  return absl::StrCat("http://127.0.0.1:", members_[i].client_port);
}
std::string Cluster::PeerUrl(int i) const {
  return absl::StrCat("http://127.0.0.1:", members_[i].peer_port);
}

std::string Cluster::Endpoints() const {
  std::vector<std::string> all;
  for (int i = 0; i < size(); ++i) all.push_back(ClientAddress(i));
  return absl::StrJoin(all, ",");
}

std::shared_ptr<grpc::Channel> Cluster::Channel(int i) {
  Member& m = members_[i];
  if (m.channel == nullptr) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(INT_MAX);
    args.SetMaxSendMessageSize(INT_MAX);
    // Reconnect quickly to a restarted member. (Not MIN_RECONNECT_BACKOFF:
    // gRPC uses it as the connect timeout, too short for a busy machine.)
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 300);
    // "ipv4:" names the address directly: with a DNS name, gRPC's
    // re-resolution cooldown delays reconnecting to a member that refused
    // a connection (it was not up yet, or restarting) by seconds.
    m.channel = grpc::CreateCustomChannel(
        "ipv4:" + ClientAddress(i), grpc::InsecureChannelCredentials(), args);
    m.kv = etcdserverpb::KV::NewStub(m.channel);
    m.maintenance = etcdserverpb::Maintenance::NewStub(m.channel);
    m.cluster = etcdserverpb::Cluster::NewStub(m.channel);
  }
  return m.channel;
}

etcdserverpb::KV::Stub* Cluster::Kv(int i) {
  Channel(i);
  return members_[i].kv.get();
}
etcdserverpb::Maintenance::Stub* Cluster::Maintenance(int i) {
  Channel(i);
  return members_[i].maintenance.get();
}
etcdserverpb::Cluster::Stub* Cluster::ClusterStub(int i) {
  Channel(i);
  return members_[i].cluster.get();
}

grpc::Status Cluster::Status(int i, etcdserverpb::StatusResponse* resp,
                             std::chrono::milliseconds timeout) {
  auto ctx = ContextWithTimeout(timeout);
  // Wait for the connection (within the timeout) rather than fail fast.
  ctx->set_wait_for_ready(true);
  return Maintenance(i)->Status(ctx.get(), etcdserverpb::StatusRequest(), resp);
}

int Cluster::WaitForLeader(const std::vector<int>& among,
                           std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    uint64_t leader = 0;
    int leader_index = -1;
    bool agree = true;
    int answered = 0;
    for (int i : among) {
      if (!Running(i)) continue;
      etcdserverpb::StatusResponse resp;
      if (!Status(i, &resp, std::chrono::milliseconds(500)).ok() ||
          resp.leader() == 0 || (leader != 0 && resp.leader() != leader)) {
        agree = false;
        break;
      }
      ++answered;
      leader = resp.leader();
      if (resp.header().member_id() == leader) leader_index = i;
    }
    if (agree && answered > 0 && leader_index >= 0) return leader_index;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return -1;
}

int Cluster::WaitForLeader(std::chrono::milliseconds timeout) {
  std::vector<int> all;
  for (int i = 0; i < size(); ++i) all.push_back(i);
  return WaitForLeader(all, timeout);
}

bool Cluster::WaitForStatus(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    bool all = true;
    for (int i = 0; i < size() && all; ++i) {
      etcdserverpb::StatusResponse resp;
      all = Status(i, &resp, std::chrono::milliseconds(500)).ok();
    }
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

grpc::Status Cluster::Put(int i, const std::string& key,
                          const std::string& value,
                          std::chrono::milliseconds timeout,
                          etcdserverpb::PutResponse* resp) {
  etcdserverpb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  etcdserverpb::PutResponse scratch;
  auto ctx = ContextWithTimeout(timeout);
  return Kv(i)->Put(ctx.get(), req, resp != nullptr ? resp : &scratch);
}

grpc::Status Cluster::Get(int i, const std::string& key, bool serializable,
                          std::chrono::milliseconds timeout,
                          std::optional<std::string>* value,
                          etcdserverpb::RangeResponse* resp) {
  etcdserverpb::RangeRequest req;
  req.set_key(key);
  req.set_serializable(serializable);
  etcdserverpb::RangeResponse scratch;
  if (resp == nullptr) resp = &scratch;
  auto ctx = ContextWithTimeout(timeout);
  grpc::Status s = Kv(i)->Range(ctx.get(), req, resp);
  if (s.ok() && value != nullptr) {
    if (resp->kvs_size() == 0) {
      value->reset();
    } else {
      *value = resp->kvs(0).value();
    }
  }
  return s;
}

std::string Cluster::LogTail(int i, int lines) const {
  std::ifstream in(members_[i].log_path);
  std::deque<std::string> tail;
  std::string line;
  while (std::getline(in, line)) {
    tail.push_back(line);
    if (static_cast<int>(tail.size()) > lines) tail.pop_front();
  }
  std::ostringstream out;
  for (const std::string& l : tail) out << l << "\n";
  return out.str();
}

void Cluster::DumpLogs() const {
  for (int i = 0; i < size(); ++i) {
    std::fprintf(stderr, "---- log of %s (%s), last 150 lines ----\n%s",
                 members_[i].name.c_str(), members_[i].log_path.c_str(),
                 LogTail(i, 150).c_str());
  }
  std::fflush(stderr);
}

int64_t Cluster::NowNs() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now() - start_)
      .count();
}

}  // namespace raftkv::process_test
