// raftkv-server's flags (server/config.h): CLI11 parsing into ServerFlags
// and their validation into a ServerConfig.
#include "server/config.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"

namespace raftkv::server {
namespace {

// Parses `args` (without the program name) as main does.
ServerFlags Parse(std::vector<std::string> args) {
  CLI::App app;
  ServerFlags flags;
  RegisterFlags(&app, &flags);
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  app.parse(reversed);  // CLI11 takes the arguments in reverse order
  return flags;
}

absl::StatusOr<ServerConfig> Validate(std::vector<std::string> args) {
  return ValidateFlags(Parse(std::move(args)));
}

const std::string kCluster =
    "n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2382,n3=http://127.0.0.1:"
    "2384";

std::vector<std::string> Member2Args() {
  return {"--name",
          "n2",
          "--data-dir",
          "/tmp/n2",
          "--listen-client-urls",
          "http://127.0.0.1:2381",
          "--advertise-client-urls",
          "http://127.0.0.1:2381",
          "--listen-peer-urls",
          "http://127.0.0.1:2382",
          "--initial-advertise-peer-urls",
          "http://127.0.0.1:2382",
          "--initial-cluster",
          kCluster,
          "--initial-cluster-token",
          "tok",
          "--initial-cluster-state",
          "new",
          "--log-level",
          "debug",
          "--heartbeat-interval",
          "50",
          "--election-timeout",
          "500"};
}

// `args` with flag `flag` set to `value` (replaced or appended).
std::vector<std::string> With(std::vector<std::string> args,
                              const std::string& flag,
                              const std::string& value) {
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == flag) {
      args[i + 1] = value;
      return args;
    }
  }
  args.push_back(flag);
  args.push_back(value);
  return args;
}

void ExpectInvalid(const absl::StatusOr<ServerConfig>& c,
                   const std::string& fragment) {
  ASSERT_FALSE(c.ok()) << "accepted; expected an error with: " << fragment;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find(fragment), std::string::npos)
      << c.status();
}

TEST(ConfigTest, DefaultsAreEtcds) {
  absl::StatusOr<ServerConfig> c = Validate({});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "default");
  EXPECT_EQ(c->data_dir, "default.etcd");
  ASSERT_EQ(c->listen_client_urls.size(), 1u);
  EXPECT_EQ(c->listen_client_urls[0].ToString(), "http://localhost:2379");
  EXPECT_EQ(c->advertise_client_urls[0].ToString(), "http://localhost:2379");
  EXPECT_EQ(c->listen_peer_urls[0].ToString(), "http://localhost:2380");
  EXPECT_EQ(c->advertise_peer_urls[0].ToString(), "http://localhost:2380");
  EXPECT_EQ(c->initial_cluster, "default=http://localhost:2380");
  ASSERT_EQ(c->members.size(), 1u);
  EXPECT_EQ(c->store_id, 1u);
  EXPECT_TRUE(c->new_cluster);
  EXPECT_EQ(c->cluster_token, "etcd-cluster");
  EXPECT_EQ(c->log_level, LogLevel::kInfo);
  EXPECT_EQ(c->heartbeat_interval_ms, 100);
  EXPECT_EQ(c->election_timeout_ms, 1000);
  EXPECT_NE(c->member_id, 0u);
  EXPECT_NE(c->cluster_id, 0u);
}

TEST(ConfigTest, DataDirAndInitialClusterFollowTheName) {
  absl::StatusOr<ServerConfig> c = Validate({"--name", "infra0"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->data_dir, "infra0.etcd");
  EXPECT_EQ(c->initial_cluster, "infra0=http://localhost:2380");
}

TEST(ConfigTest, ThreeMemberClusterFlags) {
  absl::StatusOr<ServerConfig> c = Validate(Member2Args());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "n2");
  EXPECT_EQ(c->data_dir, "/tmp/n2");
  EXPECT_EQ(c->listen_client_urls[0].HostPort(), "127.0.0.1:2381");
  EXPECT_EQ(c->listen_peer_urls[0].HostPort(), "127.0.0.1:2382");
  EXPECT_EQ(c->log_level, LogLevel::kDebug);
  EXPECT_EQ(c->heartbeat_interval_ms, 50);
  EXPECT_EQ(c->election_timeout_ms, 500);
  ASSERT_EQ(c->members.size(), 3u);
  // Store ids follow the order of --initial-cluster.
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(c->members[i].name, "n" + std::to_string(i + 1));
    EXPECT_EQ(c->members[i].store_id, i + 1);
  }
  EXPECT_EQ(c->store_id, 2u);
  EXPECT_EQ(c->member_id, c->members[1].member_id);
  EXPECT_EQ(c->initial_cluster, kCluster);
}

TEST(ConfigTest, IdsAreStableDistinctAndDependOnTheToken) {
  absl::StatusOr<ServerConfig> a = Validate(Member2Args());
  absl::StatusOr<ServerConfig> b = Validate(Member2Args());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->member_id, b->member_id);
  EXPECT_EQ(a->cluster_id, b->cluster_id);
  std::set<uint64_t> ids;
  for (const ClusterMember& m : a->members) ids.insert(m.member_id);
  EXPECT_EQ(ids.size(), 3u);
  // Every member computes the same cluster id.
  std::vector<std::string> n1 = Member2Args();
  n1 = With(n1, "--name", "n1");
  n1 = With(n1, "--initial-advertise-peer-urls", "http://127.0.0.1:2380");
  absl::StatusOr<ServerConfig> c1 = Validate(n1);
  ASSERT_TRUE(c1.ok()) << c1.status();
  EXPECT_EQ(c1->cluster_id, a->cluster_id);
  EXPECT_EQ(c1->member_id, a->members[0].member_id);
  // Another token: another cluster, other members.
  absl::StatusOr<ServerConfig> other =
      Validate(With(Member2Args(), "--initial-cluster-token", "tok2"));
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->cluster_id, a->cluster_id);
  EXPECT_NE(other->member_id, a->member_id);
  // Pinned values catch an accidental change of the hash, which would make
  // every existing data dir refuse to start (its member file records them).
  EXPECT_EQ(MemberId("n1", {Url{"127.0.0.1", 2380}}, "tok"),
            2623481092973034277ULL);
  EXPECT_EQ(a->cluster_id, 11838367518966554715ULL);
  EXPECT_NE(MemberId("n1", {Url{"127.0.0.1", 2380}}, "tok"),
            MemberId("n1", {Url{"127.0.0.1", 2381}}, "tok"));
  EXPECT_EQ(MemberId("n", {Url{"a", 1}, Url{"b", 2}}, "t"),
            MemberId("n", {Url{"b", 2}, Url{"a", 1}}, "t"));
}

TEST(ConfigTest, SeveralUrlsAndIpv6) {
  std::vector<std::string> args = {
      "--name",
      "a",
      "--listen-client-urls",
      "http://127.0.0.1:2379,http://[::1]:2379/",
      "--initial-advertise-peer-urls",
      "http://10.0.0.1:2380,http://10.0.0.2:2380",
      "--initial-cluster",
      "a=http://10.0.0.1:2380,a=http://10.0.0.2:2380,b=http://10.0.0.3:2380"};
  absl::StatusOr<ServerConfig> c = Validate(args);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->listen_client_urls.size(), 2u);
  EXPECT_EQ(c->listen_client_urls[1].host, "::1");
  EXPECT_EQ(c->listen_client_urls[1].HostPort(), "[::1]:2379");
  ASSERT_EQ(c->members.size(), 2u);
  EXPECT_EQ(c->members[0].peer_urls.size(), 2u);
  EXPECT_EQ(c->members[1].store_id, 2u);
}

TEST(ConfigTest, BadUrlsAreRefusedWithTheReason) {
  ExpectInvalid(Validate({"--listen-client-urls", "https://127.0.0.1:2379"}),
                "https is not supported yet");
  ExpectInvalid(Validate({"--listen-client-urls", "unix://sock:1"}),
                "unsupported scheme");
  ExpectInvalid(Validate({"--listen-client-urls", "127.0.0.1:2379"}),
                "http://host:port");
  ExpectInvalid(Validate({"--listen-peer-urls", "http://127.0.0.1"}),
                "missing port");
  ExpectInvalid(Validate({"--listen-peer-urls", "http://127.0.0.1:99999"}),
                "1..65535");
  ExpectInvalid(Validate({"--listen-peer-urls", "http://127.0.0.1:0"}),
                "1..65535");
  ExpectInvalid(Validate({"--listen-peer-urls", "http://127.0.0.1:x"}),
                "1..65535");
  ExpectInvalid(Validate({"--advertise-client-urls", "http://:2379"}),
                "missing host");
  ExpectInvalid(Validate({"--advertise-client-urls", "http://h:1/path"}),
                "no path");
  ExpectInvalid(Validate({"--advertise-client-urls", "http://::1:2379"}),
                "brackets");
  ExpectInvalid(Validate({"--listen-client-urls", ""}), "at least one URL");
  // The flag is named in the message.
  ExpectInvalid(Validate({"--listen-peer-urls", "http://127.0.0.1"}),
                "--listen-peer-urls");
}

TEST(ConfigTest, InitialClusterIsChecked) {
  ExpectInvalid(Validate(With(Member2Args(), "--name", "n4")),
                "is not a member of --initial-cluster");
  ExpectInvalid(Validate(With(Member2Args(), "--initial-cluster",
                              "n1=http://127.0.0.1:2380,n2")),
                "is not name=url");
  ExpectInvalid(Validate(With(Member2Args(), "--initial-cluster",
                              "=http://127.0.0.1:2380")),
                "has no name");
  ExpectInvalid(
      Validate(With(Member2Args(), "--initial-cluster",
                    "n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2380")),
      "more than once");
  ExpectInvalid(Validate(With(Member2Args(), "--initial-cluster",
                              "n1=http://127.0.0.1:2380,n2=https://h:1")),
                "https is not supported yet");
  // This member's URLs in --initial-cluster must be the advertised ones.
  ExpectInvalid(Validate(With(Member2Args(), "--initial-advertise-peer-urls",
                              "http://127.0.0.1:2390")),
                "--initial-advertise-peer-urls");
}

TEST(ConfigTest, OtherFlagsAreChecked) {
  absl::StatusOr<ServerConfig> existing =
      Validate(With(Member2Args(), "--initial-cluster-state", "existing"));
  ASSERT_TRUE(existing.ok()) << existing.status();
  EXPECT_FALSE(existing->new_cluster);
  ExpectInvalid(Validate(With(Member2Args(), "--initial-cluster-state", "old")),
                "new or existing");
  ExpectInvalid(Validate(With(Member2Args(), "--log-level", "verbose")),
                "debug, info, warn or error");
  for (const char* level : {"debug", "info", "warn", "error"}) {
    absl::StatusOr<ServerConfig> c =
        Validate(With(Member2Args(), "--log-level", level));
    ASSERT_TRUE(c.ok()) << level;
    EXPECT_EQ(LogLevelName(c->log_level), level);
  }
  ExpectInvalid(Validate(With(Member2Args(), "--heartbeat-interval", "0")),
                "must be positive");
  // etcd: the election timeout is at least 5 heartbeats, at most 50 s.
  ExpectInvalid(Validate(With(Member2Args(), "--election-timeout", "249")),
                "at least 5 times");
  EXPECT_TRUE(Validate(With(Member2Args(), "--election-timeout", "250")).ok());
  ExpectInvalid(Validate(With(Member2Args(), "--election-timeout", "50001")),
                "at most 50000");
  ExpectInvalid(Validate(With(Member2Args(), "--name", "")),
                "--name must not be empty");
  ExpectInvalid(Validate(With(Member2Args(), "--initial-cluster-token", "")),
                "--initial-cluster-token must not be empty");
}

TEST(ConfigTest, SyntaxErrorsAreCli11Errors) {
  EXPECT_THROW(Parse({"--no-such-flag", "x"}), CLI::ParseError);
  EXPECT_THROW(Parse({"--heartbeat-interval", "fast"}), CLI::ParseError);
  EXPECT_THROW(Parse({"--name"}), CLI::ParseError);
}

}  // namespace
}  // namespace raftkv::server
