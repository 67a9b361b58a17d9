// raftkv-bench: a closed-loop load generator speaking etcd's v3 KV API, so
// that it drives raftkv-server and etcd alike.
//
//   raftkv-bench --endpoints=127.0.0.1:2379,127.0.0.1:22379 --clients=64
//                --conns=8 --total=100000 [--mode=put|range|txn-put]
//
// --clients clients each keep one request in flight: when a response comes
// back the client sends its next request, until --total requests have been
// sent in all. The clients share --conns gRPC channels (each its own TCP
// connection; client i uses channel i % conns, channel j connects to endpoint
// j % endpoints) and are driven through gRPC's asynchronous completion-queue
// API by --threads threads (default: one per core, at most one per client),
// not a thread per client. One thread alone is slower on a busy machine:
// every completion waits for that one thread to be scheduled.
//
// Modes (keys are --key-size bytes: a random index in [0, --key-space-size)
// in zero-padded decimal, drawn from a generator seeded by --seed and the
// client's number; values are --val-size random bytes, also seeded):
//   put      Put(key, value);
//   range    Range(key), linearizable (--consistency l) or serializable (s);
//   txn-put  Txn(if version(key) < 2^62 then Put(key, value)): one compare
//            on the key's version (always true) and one put.
// --sequential-keys takes the keys 0, 1, 2, ... (modulo the key space) in the
// order the requests are sent instead: `--mode=put --total=N
// --sequential-keys` loads every key of a key space of N.
//
// A request that fails (any gRPC status but OK, including the --timeout
// deadline) is counted as an error and the client goes on. Throughput is
// successful requests per second of wall time from the first request to the
// last response; latencies are those of the successful requests (every one
// is kept and sorted: --total bounds the memory).
//
// Output: the parameters, throughput, latency percentiles in milliseconds,
// and as the last line exactly
//   ops_per_s=N p50_ms=N p99_ms=N errors=N
// --csv FILE appends one row (a header first if the file is new or empty):
//   mode,clients,conns,ops_per_s,p50_ms,p90_ms,p99_ms,p999_ms,errors
// Exit status: 0 after a run (even with errors); 2 bad flags.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "etcdserverpb/rpc.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

enum class Mode { kPut, kRange, kTxnPut };

// The validated command line.
struct Options {
  std::string mode_name = "put";
  Mode mode = Mode::kPut;
  std::vector<std::string> endpoints;  // host:port
  int clients = 1;
  int conns = 1;
  int threads = 0;  // 0: one per core
  int64_t total = 10000;
  int key_size = 8;
  int val_size = 256;
  int64_t key_space_size = 100000;
  bool serializable = false;
  bool sequential_keys = false;
  std::string csv;
  uint64_t seed = 1;
  double timeout_s = 10;
  double dial_timeout_s = 5;
};

// "http://127.0.0.1:2379" -> "127.0.0.1:2379"; other text is unchanged.
std::string StripScheme(const std::string& endpoint) {
  const std::string kHttp = "http://";
  if (endpoint.compare(0, kHttp.size(), kHttp) == 0) {
    return endpoint.substr(kHttp.size());
  }
  return endpoint;
}

// splitmix64: spreads (seed, client) pairs into unrelated generator seeds.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The key of index `index`: zero-padded decimal, exactly `key_size` bytes.
// Precondition: `index` has at most `key_size` digits (checked on the flags).
std::string KeyOf(int64_t index, int key_size) {
  std::string key(static_cast<size_t>(key_size), '0');
  for (size_t pos = key.size(); index > 0 && pos > 0; index /= 10) {
    key[--pos] = static_cast<char>('0' + index % 10);
  }
  return key;
}

// Number of decimal digits of `n` (n >= 0).
int Digits(int64_t n) {
  int digits = 1;
  for (; n >= 10; n /= 10) ++digits;
  return digits;
}

class Bench;

// One client: at most one request in flight, on its channel's stub and its
// thread's completion queue.
struct Client {
  int id = 0;
  etcdserverpb::KV::Stub* stub = nullptr;
  grpc::CompletionQueue* cq = nullptr;
  std::mt19937_64 rng;
};

// One request in flight; the completion queue's tag.
struct Call {
  Client* client = nullptr;
  Clock::time_point start;
  grpc::ClientContext context;
  grpc::Status status;
  etcdserverpb::PutResponse put_response;
  etcdserverpb::RangeResponse range_response;
  etcdserverpb::TxnResponse txn_response;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::PutResponse>>
      put_reader;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::RangeResponse>>
      range_reader;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::TxnResponse>>
      txn_reader;
};

// What one driving thread measured.
struct ThreadResult {
  std::vector<int64_t> latencies_ns;  // of the successful requests
  int64_t errors = 0;
  std::vector<std::string> first_errors;  // a few error messages, to print
};

// The whole run: channels, clients, driving threads, results.
class Bench {
 public:
  explicit Bench(const Options& options) : options_(options) {}

  // Connects the channels (waiting up to --dial-timeout for each; a channel
  // that does not connect is reported and its requests fail, counted as
  // errors), runs the load to completion and prints the report. Returns the
  // process exit status (0).
  int Run();

 private:
  // Sends `client`'s next request if the run has requests left; returns
  // false (and sends nothing) when it has not.
  bool SendNext(Client* client);
  // The loop of driving thread `index`: takes completions from its queue,
  // records them and sends each client's next request, until none of its
  // clients has a request in flight.
  void Drive(int index);
  void Report(double elapsed_s) const;

  const Options options_;
  std::string value_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> stubs_;
  std::vector<std::unique_ptr<grpc::CompletionQueue>> queues_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<ThreadResult> results_;
  std::atomic<int64_t> sent_{0};
};

bool Bench::SendNext(Client* client) {
  int64_t ticket = sent_.fetch_add(1, std::memory_order_relaxed);
  if (ticket >= options_.total) return false;
  int64_t index;
  if (options_.sequential_keys) {
    index = ticket % options_.key_space_size;
  } else {
    index = static_cast<int64_t>(
        client->rng() % static_cast<uint64_t>(options_.key_space_size));
  }
  std::string key = KeyOf(index, options_.key_size);

  auto* call = new Call;
  call->client = client;
  call->context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::microseconds(static_cast<int64_t>(
                                 options_.timeout_s * 1e6)));
  call->start = Clock::now();
  switch (options_.mode) {
    case Mode::kPut: {
      etcdserverpb::PutRequest request;
      request.set_key(std::move(key));
      request.set_value(value_);
      call->put_reader =
          client->stub->PrepareAsyncPut(&call->context, request, client->cq);
      call->put_reader->StartCall();
      call->put_reader->Finish(&call->put_response, &call->status, call);
      break;
    }
    case Mode::kRange: {
      etcdserverpb::RangeRequest request;
      request.set_key(std::move(key));
      request.set_serializable(options_.serializable);
      call->range_reader =
          client->stub->PrepareAsyncRange(&call->context, request, client->cq);
      call->range_reader->StartCall();
      call->range_reader->Finish(&call->range_response, &call->status, call);
      break;
    }
    case Mode::kTxnPut: {
      etcdserverpb::TxnRequest request;
      etcdserverpb::Compare* compare = request.add_compare();
      compare->set_key(key);
      compare->set_target(etcdserverpb::Compare::VERSION);
      compare->set_result(etcdserverpb::Compare::LESS);
      compare->set_version(int64_t{1} << 62);
      etcdserverpb::PutRequest* put =
          request.add_success()->mutable_request_put();
      put->set_key(std::move(key));
      put->set_value(value_);
      call->txn_reader =
          client->stub->PrepareAsyncTxn(&call->context, request, client->cq);
      call->txn_reader->StartCall();
      call->txn_reader->Finish(&call->txn_response, &call->status, call);
      break;
    }
  }
  return true;
}

void Bench::Drive(int index) {
  ThreadResult& result = results_[static_cast<size_t>(index)];
  grpc::CompletionQueue* cq = queues_[static_cast<size_t>(index)].get();
  int active = 0;
  for (auto& client : clients_) {
    if (client->cq == cq && SendNext(client.get())) ++active;
  }
  while (active > 0) {
    void* tag = nullptr;
    bool ok = false;
    if (!cq->Next(&tag, &ok)) break;  // shut down: cannot happen before Run
    auto* call = static_cast<Call*>(tag);
    int64_t latency = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          Clock::now() - call->start)
                          .count();
    if (ok && call->status.ok()) {
      result.latencies_ns.push_back(latency);
    } else {
      ++result.errors;
      if (result.first_errors.size() < 5) {
        result.first_errors.push_back(
            ok ? std::to_string(call->status.error_code()) + " " +
                     call->status.error_message()
               : std::string("completion not ok"));
      }
    }
    Client* client = call->client;
    delete call;
    if (!SendNext(client)) --active;
  }
}

int Bench::Run() {
  // The value: seeded random printable bytes.
  std::mt19937_64 value_rng(Mix(options_.seed ^ 0x76616c7565ULL));
  value_.resize(static_cast<size_t>(options_.val_size));
  for (char& c : value_) c = static_cast<char>('a' + value_rng() % 26);

  for (int i = 0; i < options_.conns; ++i) {
    grpc::ChannelArguments args;
    // A channel of its own (its own TCP connection) for each --conns.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("raftkv_bench.conn", i);
    // The cheapest client stack that still enforces --timeout: no retry
    // filter (a failed request is counted, never retried) and, through the
    // minimal stack, no compression filter (nothing is compressed); deadline
    // checks are turned back on, which the minimal stack would drop. Each
    // call then costs the load generator 15% fewer instructions
    // (scripts/callgrind_profile.sh bench).
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    args.SetInt(GRPC_ARG_MINIMAL_STACK, 1);
    args.SetInt(GRPC_ARG_ENABLE_DEADLINE_CHECKS, 1);
    const std::string& target =
        options_.endpoints[static_cast<size_t>(i) % options_.endpoints.size()];
    channels_.push_back(grpc::CreateCustomChannel(
        target, grpc::InsecureChannelCredentials(), args));
    stubs_.push_back(etcdserverpb::KV::NewStub(channels_.back()));
  }
  // gRPC takes deadlines on the system clock.
  auto dial_deadline = std::chrono::system_clock::now() +
                       std::chrono::microseconds(
                           static_cast<int64_t>(options_.dial_timeout_s * 1e6));
  for (int i = 0; i < options_.conns; ++i) {
    if (!channels_[static_cast<size_t>(i)]->WaitForConnected(dial_deadline)) {
      std::fprintf(
          stderr,
          "raftkv-bench: connection %d to %s not ready after %.1f s "
          "(its requests will fail)\n",
          i,
          options_.endpoints[static_cast<size_t>(i) % options_.endpoints.size()]
              .c_str(),
          options_.dial_timeout_s);
    }
  }

  for (int t = 0; t < options_.threads; ++t) {
    queues_.push_back(std::make_unique<grpc::CompletionQueue>());
  }
  for (int i = 0; i < options_.clients; ++i) {
    auto client = std::make_unique<Client>();
    client->id = i;
    client->stub = stubs_[static_cast<size_t>(i % options_.conns)].get();
    client->cq = queues_[static_cast<size_t>(i % options_.threads)].get();
    client->rng.seed(
        Mix(options_.seed * 0x100000001b3ULL + static_cast<uint64_t>(i)));
    clients_.push_back(std::move(client));
  }
  results_.resize(static_cast<size_t>(options_.threads));
  for (auto& r : results_) {
    r.latencies_ns.reserve(static_cast<size_t>(
        options_.total / options_.threads + options_.clients + 1));
  }

  Clock::time_point start = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < options_.threads; ++t) {
    threads.emplace_back([this, t] { Drive(t); });
  }
  for (auto& thread : threads) thread.join();
  double elapsed_s =
      std::chrono::duration<double>(Clock::now() - start).count();

  for (auto& cq : queues_) {
    cq->Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (cq->Next(&tag, &ok)) {
    }
  }
  Report(elapsed_s);
  return 0;
}

void Bench::Report(double elapsed_s) const {
  std::vector<int64_t> latencies;
  int64_t errors = 0;
  for (const ThreadResult& r : results_) {
    latencies.insert(latencies.end(), r.latencies_ns.begin(),
                     r.latencies_ns.end());
    errors += r.errors;
  }
  std::sort(latencies.begin(), latencies.end());
  // The q-quantile (nearest rank), in ms; 0 when nothing succeeded.
  auto quantile_ms = [&latencies](double q) -> double {
    if (latencies.empty()) return 0;
    auto rank = static_cast<size_t>(
        std::ceil(q * static_cast<double>(latencies.size())));
    rank = std::clamp<size_t>(rank, 1, latencies.size());
    return static_cast<double>(latencies[rank - 1]) / 1e6;
  };
  double sum_ms = 0;
  for (int64_t l : latencies) sum_ms += static_cast<double>(l) / 1e6;
  const auto ok = static_cast<int64_t>(latencies.size());
  double ops_per_s = elapsed_s > 0 ? static_cast<double>(ok) / elapsed_s : 0;
  double p50 = quantile_ms(0.5), p90 = quantile_ms(0.9),
         p99 = quantile_ms(0.99), p999 = quantile_ms(0.999);

  std::string endpoints;
  for (const std::string& e : options_.endpoints) {
    endpoints += (endpoints.empty() ? "" : ",") + e;
  }
  std::printf(
      "mode=%s%s endpoints=%s clients=%d conns=%d threads=%d\n",
      options_.mode_name.c_str(),
      options_.mode == Mode::kRange
          ? (options_.serializable ? " consistency=s" : " consistency=l")
          : "",
      endpoints.c_str(), options_.clients, options_.conns, options_.threads);
  std::printf("total=%" PRId64
              " key_size=%d val_size=%d key_space_size=%" PRId64
              " seed=%" PRIu64 "%s\n",
              options_.total, options_.key_size, options_.val_size,
              options_.key_space_size, options_.seed,
              options_.sequential_keys ? " sequential_keys" : "");
  std::printf("succeeded=%" PRId64 " errors=%" PRId64 " elapsed_s=%.3f\n", ok,
              errors, elapsed_s);
  for (const ThreadResult& r : results_) {
    for (const std::string& e : r.first_errors) {
      std::printf("error: %s\n", e.c_str());
    }
  }
  std::printf("throughput: %.1f ops/s\n", ops_per_s);
  std::printf(
      "latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  "
      "mean %.3f\n",
      p50, p90, p99, p999, quantile_ms(1.0),
      ok > 0 ? sum_ms / static_cast<double>(ok) : 0.0);

  if (!options_.csv.empty()) {
    bool fresh = true;
    {
      std::ifstream in(options_.csv, std::ios::binary | std::ios::ate);
      fresh = !in || in.tellg() <= 0;
    }
    std::FILE* f = std::fopen(options_.csv.c_str(), "a");
    if (f == nullptr) {
      std::fprintf(stderr, "raftkv-bench: cannot append to %s\n",
                   options_.csv.c_str());
    } else {
      if (fresh) {
        std::fprintf(f,
                     "mode,clients,conns,ops_per_s,p50_ms,p90_ms,p99_ms,"
                     "p999_ms,errors\n");
      }
      std::string mode = options_.mode_name;
      if (options_.mode == Mode::kRange) {
        mode += options_.serializable ? "-s" : "-l";
      }
      std::fprintf(f, "%s,%d,%d,%.0f,%.3f,%.3f,%.3f,%.3f,%" PRId64 "\n",
                   mode.c_str(), options_.clients, options_.conns, ops_per_s,
                   p50, p90, p99, p999, errors);
      std::fclose(f);
    }
  }
  std::printf("ops_per_s=%.0f p50_ms=%.3f p99_ms=%.3f errors=%" PRId64 "\n",
              ops_per_s, p50, p99, errors);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "raftkv-bench: a load generator speaking etcd's v3 KV API (raftkv or "
      "etcd)"};
  Options options;
  std::string endpoints = "127.0.0.1:2379";
  std::string consistency = "l";
  app.add_option("--mode", options.mode_name, "put | range | txn-put")
      ->check(CLI::IsMember({"put", "range", "txn-put"}));
  app.add_option("--endpoints", endpoints,
                 "comma-separated host:port list; channels spread over them");
  app.add_option("--clients", options.clients,
                 "concurrent clients (one request in flight each)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--conns", options.conns, "gRPC channels (TCP connections)")
      ->check(CLI::Range(1, 10000));
  app.add_option("--threads", options.threads,
                 "threads driving the completion queues (default: one per "
                 "core)")
      ->check(CLI::Range(0, 64));
  app.add_option("--total", options.total, "requests in all")
      ->check(CLI::Range(int64_t{1}, int64_t{100000000}));
  app.add_option("--key-size", options.key_size, "bytes per key")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--val-size", options.val_size, "bytes per value")
      ->check(CLI::Range(0, 64 << 20));
  app.add_option("--key-space-size", options.key_space_size,
                 "keys are drawn from [0, this)")
      ->check(CLI::Range(int64_t{1}, std::numeric_limits<int64_t>::max()));
  app.add_option("--consistency", consistency,
                 "range: l (linearizable) or s (serializable)")
      ->check(CLI::IsMember({"l", "s"}));
  app.add_flag("--sequential-keys", options.sequential_keys,
               "keys 0, 1, 2, ... in sending order (to load a key space)");
  app.add_option("--csv", options.csv, "append a result row to this file");
  app.add_option("--seed", options.seed, "seed of the keys and the value");
  app.add_option("--timeout", options.timeout_s,
                 "seconds before a request fails (counted as an error)")
      ->check(CLI::PositiveNumber);
  app.add_option("--dial-timeout", options.dial_timeout_s,
                 "seconds to wait for each connection before starting")
      ->check(CLI::NonNegativeNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  // As in raftkv-server: Debian's abseil is built without NDEBUG, so every
  // absl::Mutex acquisition inside gRPC would update a deadlock-detection
  // lock graph. The load generator shares the CPU with the servers it
  // measures; it should spend as little of it as it can.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  options.mode = options.mode_name == "put"     ? Mode::kPut
                 : options.mode_name == "range" ? Mode::kRange
                                                : Mode::kTxnPut;
  options.serializable = consistency == "s";
  for (absl::string_view e :
       absl::StrSplit(endpoints, ',', absl::SkipEmpty())) {
    options.endpoints.push_back(StripScheme(std::string(e)));
  }
  if (options.endpoints.empty()) {
    std::fprintf(stderr, "raftkv-bench: --endpoints is empty\n");
    return 2;
  }
  if (Digits(options.key_space_size - 1) > options.key_size) {
    std::fprintf(stderr,
                 "raftkv-bench: --key-size %d is too small for "
                 "--key-space-size %" PRId64 " (keys are decimal)\n",
                 options.key_size, options.key_space_size);
    return 2;
  }
  if (options.threads == 0) {
    options.threads =
        std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  }
  if (options.threads > options.clients) options.threads = options.clients;
  return Bench(options).Run();
}
