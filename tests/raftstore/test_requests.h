// Builders of the commands the raftstore tests send: all address region 1 of
// a cluster made by InitialRegion (peer i on store i, epoch (1, 1)) and the
// default column family.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "storage/keys.h"
#include "storepb/raft_cmdpb.pb.h"

namespace raftkv::raftstore::test {

// A command for the peer on `store_id`, with an exactly-once client id and
// sequence number (0: none).
inline raft_cmdpb::RaftCmdRequest Header(uint64_t store_id, uint64_t client = 0,
                                         uint64_t seq = 0) {
  raft_cmdpb::RaftCmdRequest req;
  auto* h = req.mutable_header();
  h->set_region_id(1);
  h->mutable_peer()->set_id(store_id);  // peer i lives on store i
  h->mutable_peer()->set_store_id(store_id);
  h->mutable_region_epoch()->set_conf_ver(1);
  h->mutable_region_epoch()->set_version(1);
  h->set_client_id(client);
  h->set_sequence(seq);
  return req;
}

inline raft_cmdpb::RaftCmdRequest Put(uint64_t store_id, const std::string& k,
                                      const std::string& v, uint64_t client = 0,
                                      uint64_t seq = 0) {
  raft_cmdpb::RaftCmdRequest req = Header(store_id, client, seq);
  auto* r = req.add_requests();
  r->set_cmd_type(raft_cmdpb::Put);
  r->mutable_put()->set_cf(std::string(storage::kCfDefault));
  r->mutable_put()->set_key(k);
  r->mutable_put()->set_value(v);
  return req;
}

// An etcd Put of k = v, as one Etcd request.
inline raft_cmdpb::RaftCmdRequest EtcdPut(uint64_t store_id,
                                          const std::string& k,
                                          const std::string& v) {
  raft_cmdpb::RaftCmdRequest req = Header(store_id);
  auto* r = req.add_requests();
  r->set_cmd_type(raft_cmdpb::Etcd);
  r->mutable_etcd()->mutable_put()->set_key(k);
  r->mutable_etcd()->mutable_put()->set_value(v);
  return req;
}

// One command reading every key of `keys`, in order.
inline raft_cmdpb::RaftCmdRequest MultiGet(
    uint64_t store_id, const std::vector<std::string>& keys) {
  raft_cmdpb::RaftCmdRequest req = Header(store_id);
  for (const std::string& k : keys) {
    auto* r = req.add_requests();
    r->set_cmd_type(raft_cmdpb::Get);
    r->mutable_get()->set_cf(std::string(storage::kCfDefault));
    r->mutable_get()->set_key(k);
  }
  return req;
}

inline raft_cmdpb::RaftCmdRequest Get(uint64_t store_id, const std::string& k) {
  return MultiGet(store_id, {k});
}

}  // namespace raftkv::raftstore::test
