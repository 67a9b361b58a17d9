// Snapshot files: the on-disk form of a region snapshot, and the directory
// that holds them while they are generated, sent, received and applied.
//
// A region snapshot is one RocksDB SST file per non-empty column family of
// the region's key range, written by RocksDB's SstFileWriter from a
// consistent engine Snapshot, and applied on the receiver by clearing the
// range and ingesting the files (IngestExternalFile, which checks the files'
// block checksums before it touches the database). Each file is described
// by a SnapFileMeta: its column family, name, size in bytes and a CRC32C of
// its whole content (RocksDB's Crc32c file checksum generator; the uint32_t
// is the plain CRC-32C value, so the CRC32C of "123456789" is 0xE3069283).
// A receiver computes the same CRC32C while it writes the chunks it gets and
// accepts the file only if the size and checksum match, so a corrupt or
// broken transfer is never applied.
//
// A SnapDir works on the real file system or on an InMemoryEnv (the
// simulator), always the same one as the kv engine the files are ingested
// into. Files being written carry a ".tmp" suffix until Finish renames them,
// so a crash leaves either a complete, verified file or a ".tmp" that
// CleanTemporary removes.
//
// File names are one path component; a name that is empty, contains '/'
// or ends with ".tmp" is refused with InvalidArgument.
//
// Thread-safety: a SnapDir may be used from several threads (distinct
// files); a SnapFileReader or SnapFileWriter belongs to one thread at a time.
// Readers and writers keep the file system alive and may outlive their
// SnapDir.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "storage/engine.h"

namespace raftkv::storage {

// One file of a snapshot.
struct SnapFileMeta {
  std::string cf;    // column family ("default", "lock" or "write")
  std::string name;  // file name inside the SnapDir (no directory part)
  uint64_t size = 0;
  uint32_t crc32c = 0;
  uint64_t key_count = 0;
};

// The part of one column family a snapshot covers: the engine keys in
// [lower, upper) (see DataStartKey/DataEndKey in keys.h).
struct SnapRange {
  std::string cf;
  std::string lower;
  std::string upper;
};

// Reads a finished file in chunks.
class SnapFileReader {
 public:
  virtual ~SnapFileReader() = default;
  // Reads up to `max_bytes` (> 0) of the next bytes into *out (replacing its
  // content). An empty *out means the end of the file. Errors:
  // InvalidArgument for max_bytes == 0; I/O errors.
  virtual absl::Status Read(size_t max_bytes, std::string* out) = 0;
};

// Writes a file from chunks, computing its CRC32C as it goes.
class SnapFileWriter {
 public:
  // Removes the ".tmp" file if neither Finish nor Abort was called.
  virtual ~SnapFileWriter() = default;
  // Appends `data`. Errors: FailedPrecondition after Finish or Abort; I/O
  // errors (then the writer is unusable: Finish returns the same error).
  virtual absl::Status Append(std::string_view data) = 0;
  // Checks that the bytes appended have exactly `size` and `crc32c`, syncs
  // the file and renames it to its final name. Errors: DataLoss on a size or
  // checksum mismatch; FailedPrecondition after Finish or Abort; I/O errors.
  // Unless it returns OK the ".tmp" file is removed and the writer is
  // done.
  virtual absl::Status Finish(uint64_t size, uint32_t crc32c) = 0;
  // Drops the partial file. No-op after Finish or Abort.
  virtual void Abort() = 0;
};

class SnapDir {
 public:
  // Opens (creating if needed) the directory `path`, on `memory_env` if set
  // (then it must be the kv engine's InMemoryEnv), else on the real file
  // system. Missing parent directories are created too. On the real file
  // system renames are made durable by fsyncing the directory. Errors:
  // InvalidArgument for an empty path; I/O errors.
  static absl::StatusOr<std::unique_ptr<SnapDir>> Open(
      std::string path, std::shared_ptr<InMemoryEnv> memory_env);
  virtual ~SnapDir() = default;

  // Writes one SST file named "<prefix>_<cf>.sst" for each range of
  // `ranges` that holds at least one key of `snap`, with every key/value of
  // that range, and returns their metas in the order of `ranges` (empty
  // ranges are skipped, so the result may be empty). A file of the same
  // name is replaced. Each file is written as ".tmp", synced and renamed;
  // its meta's size and CRC32C come from the writer itself (no read back).
  // Streams: memory use does not grow with the data. Errors:
  // InvalidArgument if a cf appears twice or makes an invalid name; I/O
  // errors (then no file of this call remains, finished or partial).
  virtual absl::StatusOr<std::vector<SnapFileMeta>> WriteSstFiles(
      const Snapshot& snap, const std::vector<SnapRange>& ranges,
      std::string_view prefix) = 0;

  // Opens finished file `name` for chunked reading. Errors: NotFound; I/O
  // errors.
  virtual absl::StatusOr<std::unique_ptr<SnapFileReader>> OpenReader(
      std::string_view name) = 0;
  // Starts writing file `name` (as "<name>.tmp"), replacing a leftover.
  // Errors: I/O errors.
  virtual absl::StatusOr<std::unique_ptr<SnapFileWriter>> NewWriter(
      std::string_view name) = 0;

  // Checks that finished file `name` exists with `size` bytes and CRC32C
  // `crc32c` (reads it whole, unless the size differs). Errors: NotFound;
  // DataLoss on a mismatch; I/O errors.
  virtual absl::Status Verify(std::string_view name, uint64_t size,
                              uint32_t crc32c) = 0;
  // True if finished file `name` exists.
  virtual bool Exists(std::string_view name) = 0;
  // Makes finished file `to` a second name of finished file `from` (a hard
  // link: no data is copied). Errors: NotFound; InvalidArgument if the file
  // system cannot link (the caller copies instead); I/O errors.
  virtual absl::Status Link(std::string_view from, std::string_view to) = 0;
  // Removes file `name`; OK if it does not exist.
  virtual absl::Status Delete(std::string_view name) = 0;
  // The names of the finished files (not ".tmp") starting with `prefix`,
  // sorted. Errors: I/O errors.
  virtual absl::StatusOr<std::vector<std::string>> List(
      std::string_view prefix) = 0;
  // Removes every ".tmp" file (call at startup, before any writer of this
  // directory exists: a live writer's file is removed too). Errors: I/O
  // errors.
  virtual absl::Status CleanTemporary() = 0;
  // The full path of file `name`, for Engine::IngestFiles (on the file
  // system of the SnapDir, which must be the engine's).
  virtual std::string PathOf(std::string_view name) const = 0;
};

}  // namespace raftkv::storage
