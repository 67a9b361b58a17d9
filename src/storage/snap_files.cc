#include "storage/snap_files.h"

#include <rocksdb/env.h>
#include <rocksdb/file_checksum.h>
#include <rocksdb/options.h>
#include <rocksdb/sst_file_writer.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <utility>

#include "storage/rocks_status.h"

namespace raftkv::storage {
namespace {

constexpr std::string_view kTmpSuffix = ".tmp";
// Read size of Verify and of the checksum fallback of WriteSstFiles.
constexpr size_t kReadChunk = 1 << 20;

[[noreturn]] void Fatal(const std::string& what) {
  std::fprintf(stderr, "raftkv snap_files: FATAL: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

rocksdb::Slice ToSlice(std::string_view s) { return {s.data(), s.size()}; }

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.substr(s.size() - suffix.size()) == suffix;
}

using internal::FromRocks;

// A file name a SnapDir accepts: one path component, not a ".tmp" name.
bool IsValidName(std::string_view name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find('/') == std::string_view::npos &&
         !EndsWith(name, kTmpSuffix);
}

absl::Status InvalidName(std::string_view name) {
  return absl::InvalidArgumentError("invalid snapshot file name \"" +
                                    std::string(name) + "\"");
}

// RocksDB's CRC32C file checksum ("FileChecksumCrc32c"), the one that
// SstFileWriter computes when Options::file_checksum_gen_factory is set.
std::unique_ptr<rocksdb::FileChecksumGenerator> NewCrc32cGenerator() {
  rocksdb::FileChecksumGenContext ctx;
  ctx.requested_checksum_func_name = rocksdb::kStandardDbFileChecksumFuncName;
  auto gen =
      rocksdb::GetFileChecksumGenCrc32cFactory()->CreateFileChecksumGenerator(
          ctx);
  if (gen == nullptr) Fatal("RocksDB has no CRC32C file checksum generator");
  return gen;
}

// RocksDB encodes its CRC32C file checksum as the 4 bytes of the plain
// (unmasked) CRC32C value, most significant byte first; e.g. the checksum
// of "123456789" is the bytes e3 06 92 83, the standard CRC-32C check value
// 0xE3069283.
uint32_t DecodeCrc32c(const std::string& checksum) {
  if (checksum.size() != 4) {
    Fatal("unexpected CRC32C file checksum of " +
          std::to_string(checksum.size()) + " bytes");
  }
  uint32_t v = 0;
  for (char c : checksum) v = (v << 8) | static_cast<unsigned char>(c);
  return v;
}

uint32_t FinalCrc32c(rocksdb::FileChecksumGenerator* gen) {
  gen->Finalize();
  return DecodeCrc32c(gen->GetChecksum());
}

std::string HexCrc(uint32_t crc) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%08x", crc);
  return buf;
}

// Reads file `path` whole; sets its size and CRC32C.
absl::Status ComputeSizeAndCrc(rocksdb::Env* env, const std::string& path,
                               uint64_t* size, uint32_t* crc) {
  std::unique_ptr<rocksdb::SequentialFile> file;
  absl::Status s =
      FromRocks(env->NewSequentialFile(path, &file, rocksdb::EnvOptions()));
  if (!s.ok()) return s;
  auto gen = NewCrc32cGenerator();
  std::string buf(kReadChunk, '\0');
  uint64_t total = 0;
  for (;;) {
    rocksdb::Slice got;
    s = FromRocks(file->Read(buf.size(), &got, buf.data()));
    if (!s.ok()) return s;
    if (got.empty()) break;
    gen->Update(got.data(), got.size());
    total += got.size();
  }
  *size = total;
  *crc = FinalCrc32c(gen.get());
  return absl::OkStatus();
}

// What a SnapDir shares with the readers and writers it creates, which may
// outlive it.
struct DirState {
  std::string path;  // no trailing '/'
  rocksdb::Env* env = nullptr;
  // Keeps the in-memory file system alive; null on the real one.
  std::shared_ptr<InMemoryEnv> memory_env;
  // The directory itself, to fsync renames; null on the in-memory file
  // system (nothing to make durable there).
  std::unique_ptr<rocksdb::Directory> dir;

  std::string PathOf(std::string_view name) const {
    return path + "/" + std::string(name);
  }
  // Makes earlier renames in the directory durable.
  absl::Status SyncDir() const {
    return dir ? FromRocks(dir->Fsync()) : absl::OkStatus();
  }
  // Renames `from` to `to` durably.
  absl::Status Publish(const std::string& from, const std::string& to) const {
    absl::Status s = FromRocks(env->RenameFile(from, to));
    if (!s.ok()) return s;
    return SyncDir();
  }
  // Best-effort removal, for cleaning up after an error.
  void RemoveQuietly(const std::string& path_of_file) const {
    (void)env->DeleteFile(path_of_file);
  }
};

class EnvSnapFileReader : public SnapFileReader {
 public:
  explicit EnvSnapFileReader(std::shared_ptr<const DirState> dir,
                             std::unique_ptr<rocksdb::SequentialFile> file)
      : dir_(std::move(dir)), file_(std::move(file)) {}

  absl::Status Read(size_t max_bytes, std::string* out) override {
    if (max_bytes == 0) {
      return absl::InvalidArgumentError("SnapFileReader::Read of 0 bytes");
    }
    out->resize(max_bytes);
    rocksdb::Slice got;
    absl::Status s = FromRocks(file_->Read(max_bytes, &got, out->data()));
    if (!s.ok()) {
      out->clear();
      return s;
    }
    // An env may return a view of its own memory instead of filling the
    // scratch buffer.
    if (got.data() == out->data()) {
      out->resize(got.size());
    } else {
      std::string copy(got.data(), got.size());
      out->swap(copy);
    }
    return absl::OkStatus();
  }

 private:
  std::shared_ptr<const DirState> dir_;  // keeps the env alive
  std::unique_ptr<rocksdb::SequentialFile> file_;
};

class EnvSnapFileWriter : public SnapFileWriter {
 public:
  EnvSnapFileWriter(std::shared_ptr<const DirState> dir, std::string name,
                    std::unique_ptr<rocksdb::WritableFile> file)
      : dir_(std::move(dir)),
        final_path_(dir_->PathOf(name)),
        tmp_path_(final_path_ + std::string(kTmpSuffix)),
        file_(std::move(file)),
        crc_(NewCrc32cGenerator()) {}

  ~EnvSnapFileWriter() override { Abort(); }

  absl::Status Append(std::string_view data) override {
    if (file_ == nullptr) {
      return absl::FailedPreconditionError(
          "SnapFileWriter::Append after Finish or Abort of " + final_path_);
    }
    if (!failed_.ok()) return failed_;
    failed_ = FromRocks(file_->Append(ToSlice(data)));
    if (!failed_.ok()) return failed_;
    crc_->Update(data.data(), data.size());
    size_ += data.size();
    return absl::OkStatus();
  }

  absl::Status Finish(uint64_t size, uint32_t crc32c) override {
    if (file_ == nullptr) {
      return absl::FailedPreconditionError(
          "SnapFileWriter::Finish after Finish or Abort of " + final_path_);
    }
    if (!failed_.ok()) {
      Abort();
      return failed_;
    }
    const uint32_t got_crc = FinalCrc32c(crc_.get());
    if (size_ != size || got_crc != crc32c) {
      Abort();
      return absl::DataLossError("snapshot file " + final_path_ +
                                 ": received " + std::to_string(size_) +
                                 " bytes with CRC32C " + HexCrc(got_crc) +
                                 ", expected " + std::to_string(size) +
                                 " bytes with CRC32C " + HexCrc(crc32c));
    }
    absl::Status s = FromRocks(file_->Sync());
    if (s.ok()) s = FromRocks(file_->Close());
    if (s.ok()) s = dir_->Publish(tmp_path_, final_path_);
    if (!s.ok()) {
      Abort();
      return s;
    }
    file_.reset();
    return absl::OkStatus();
  }

  void Abort() override {
    if (file_ == nullptr) return;
    (void)file_->Close();
    file_.reset();
    dir_->RemoveQuietly(tmp_path_);
  }

 private:
  std::shared_ptr<const DirState> dir_;
  std::string final_path_;
  std::string tmp_path_;
  // Null once finished or aborted.
  std::unique_ptr<rocksdb::WritableFile> file_;
  std::unique_ptr<rocksdb::FileChecksumGenerator> crc_;
  uint64_t size_ = 0;
  // The first Append error; the partial file is unusable after it.
  absl::Status failed_;
};

class EnvSnapDir : public SnapDir {
 public:
  explicit EnvSnapDir(std::shared_ptr<const DirState> state)
      : state_(std::move(state)) {}

  absl::StatusOr<std::vector<SnapFileMeta>> WriteSstFiles(
      const Snapshot& snap, const std::vector<SnapRange>& ranges,
      std::string_view prefix) override;

  absl::StatusOr<std::unique_ptr<SnapFileReader>> OpenReader(
      std::string_view name) override {
    if (!IsValidName(name)) return InvalidName(name);
    std::unique_ptr<rocksdb::SequentialFile> file;
    absl::Status s = FromRocks(state_->env->NewSequentialFile(
        state_->PathOf(name), &file, rocksdb::EnvOptions()));
    if (!s.ok()) return s;
    return std::unique_ptr<SnapFileReader>(
        new EnvSnapFileReader(state_, std::move(file)));
  }

  absl::StatusOr<std::unique_ptr<SnapFileWriter>> NewWriter(
      std::string_view name) override {
    if (!IsValidName(name)) return InvalidName(name);
    std::unique_ptr<rocksdb::WritableFile> file;
    // NewWritableFile truncates a leftover ".tmp".
    absl::Status s = FromRocks(state_->env->NewWritableFile(
        state_->PathOf(name) + std::string(kTmpSuffix), &file,
        rocksdb::EnvOptions()));
    if (!s.ok()) return s;
    return std::unique_ptr<SnapFileWriter>(
        new EnvSnapFileWriter(state_, std::string(name), std::move(file)));
  }

  absl::Status Verify(std::string_view name, uint64_t size,
                      uint32_t crc32c) override {
    if (!IsValidName(name)) return InvalidName(name);
    const std::string path = state_->PathOf(name);
    uint64_t on_disk = 0;
    absl::Status s = FromRocks(state_->env->GetFileSize(path, &on_disk));
    if (!s.ok()) return s;
    if (on_disk != size) {
      return absl::DataLossError("snapshot file " + path + " has " +
                                 std::to_string(on_disk) + " bytes, expected " +
                                 std::to_string(size));
    }
    uint64_t got_size = 0;
    uint32_t got_crc = 0;
    s = ComputeSizeAndCrc(state_->env, path, &got_size, &got_crc);
    if (!s.ok()) return s;
    if (got_size != size || got_crc != crc32c) {
      return absl::DataLossError(
          "snapshot file " + path + " has " + std::to_string(got_size) +
          " bytes with CRC32C " + HexCrc(got_crc) + ", expected " +
          std::to_string(size) + " bytes with CRC32C " + HexCrc(crc32c));
    }
    return absl::OkStatus();
  }

  bool Exists(std::string_view name) override {
    return IsValidName(name) &&
           state_->env->FileExists(state_->PathOf(name)).ok();
  }

  absl::Status Link(std::string_view from, std::string_view to) override {
    if (!IsValidName(from)) return InvalidName(from);
    if (!IsValidName(to)) return InvalidName(to);
    return FromRocks(
        state_->env->LinkFile(state_->PathOf(from), state_->PathOf(to)));
  }

  absl::Status Delete(std::string_view name) override {
    if (!IsValidName(name)) return InvalidName(name);
    const std::string path = state_->PathOf(name);
    rocksdb::Status s = state_->env->DeleteFile(path);
    if (s.ok() || s.IsNotFound() || s.IsPathNotFound()) {
      return absl::OkStatus();
    }
    // Some envs report a missing file as a plain IOError.
    if (state_->env->FileExists(path).IsNotFound()) return absl::OkStatus();
    return FromRocks(s);
  }

  absl::StatusOr<std::vector<std::string>> List(
      std::string_view prefix) override {
    std::vector<std::string> children;
    absl::Status s =
        FromRocks(state_->env->GetChildren(state_->path, &children));
    if (!s.ok()) return s;
    std::vector<std::string> out;
    for (std::string& c : children) {
      if (IsValidName(c) && c.compare(0, prefix.size(), prefix) == 0) {
        out.push_back(std::move(c));
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  absl::Status CleanTemporary() override {
    std::vector<std::string> children;
    absl::Status s =
        FromRocks(state_->env->GetChildren(state_->path, &children));
    if (!s.ok()) return s;
    for (const std::string& c : children) {
      if (!EndsWith(c, kTmpSuffix)) continue;
      rocksdb::Status d = state_->env->DeleteFile(state_->PathOf(c));
      if (!d.ok() && !d.IsNotFound() && !d.IsPathNotFound()) {
        return FromRocks(d);
      }
    }
    return absl::OkStatus();
  }

  std::string PathOf(std::string_view name) const override {
    return state_->PathOf(name);
  }

 private:
  // Writes the keys of `it` (positioned at its first key) into a new SST
  // file `name`, which exists only if this returns OK.
  absl::Status WriteOneSst(Iterator& it, const std::string& name,
                           SnapFileMeta* meta);

  std::shared_ptr<const DirState> state_;
};

absl::Status EnvSnapDir::WriteOneSst(Iterator& it, const std::string& name,
                                     SnapFileMeta* meta) {
  const std::string path = state_->PathOf(name);
  const std::string tmp_path = path + std::string(kTmpSuffix);

  rocksdb::Options options;
  options.env = state_->env;
  // Compression stays RocksDB's default, the engine's own (Snappy in this
  // build), so an ingested file is stored like the engine's files. Measured
  // on 1M keys x 256 B values (Release, one 273 MB SST): Snappy costs about
  // 0.2 s more than no compression when the values are incompressible, and
  // makes text-like values 3x smaller (89 MB), which the sender reads, the
  // network carries and the receiver copies and keeps 3x less of. LZ4 is
  // close; ZSTD is 2-4x slower to write.
  //
  // With a checksum factory, SstFileWriter computes the file's CRC32C as it
  // writes it, so the file need not be read back
  // (ExternalSstFileInfo::file_checksum).
  options.file_checksum_gen_factory =
      rocksdb::GetFileChecksumGenCrc32cFactory();
  rocksdb::EnvOptions env_options(options);
  // Write back in 1 MiB steps instead of one large fsync at the end.
  env_options.bytes_per_sync = 1 << 20;

  absl::Status s;
  rocksdb::ExternalSstFileInfo info;
  uint64_t count = 0;
  {
    // The file is read again soon (to be sent), so keep it in the page
    // cache (invalidate_page_cache = false).
    rocksdb::SstFileWriter writer(env_options, options, nullptr,
                                  /*invalidate_page_cache=*/false);
    s = FromRocks(writer.Open(tmp_path));
    for (; s.ok() && it.Valid(); it.Next()) {
      s = FromRocks(writer.Put(ToSlice(it.key()), ToSlice(it.value())));
      ++count;
    }
    if (s.ok()) s = it.status();
    // Finish syncs and closes the file; a writer destroyed unfinished
    // abandons it.
    if (s.ok()) s = FromRocks(writer.Finish(&info));
  }
  uint32_t crc = 0;
  uint64_t size = info.file_size;
  if (s.ok()) {
    if (info.num_entries != count) {
      Fatal("SstFileWriter wrote " + std::to_string(info.num_entries) +
            " entries of " + std::to_string(count));
    }
    if (info.file_checksum_func_name ==
            rocksdb::kStandardDbFileChecksumFuncName &&
        !info.file_checksum.empty()) {
      crc = DecodeCrc32c(info.file_checksum);
    } else {
      // This RocksDB did not checksum the file while writing it.
      s = ComputeSizeAndCrc(state_->env, tmp_path, &size, &crc);
    }
  }
  if (s.ok()) s = state_->Publish(tmp_path, path);
  if (!s.ok()) {
    state_->RemoveQuietly(tmp_path);
    return s;
  }
  meta->name = name;
  meta->size = size;
  meta->crc32c = crc;
  meta->key_count = count;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SnapFileMeta>> EnvSnapDir::WriteSstFiles(
    const Snapshot& snap, const std::vector<SnapRange>& ranges,
    std::string_view prefix) {
  std::set<std::string> names;
  for (const SnapRange& r : ranges) {
    std::string name = std::string(prefix) + "_" + r.cf + ".sst";
    if (r.cf.empty() || !IsValidName(name)) return InvalidName(name);
    if (!names.insert(name).second) {
      return absl::InvalidArgumentError("column family \"" + r.cf +
                                        "\" appears twice in the ranges");
    }
  }
  std::vector<SnapFileMeta> metas;
  absl::Status s;
  for (const SnapRange& r : ranges) {
    std::unique_ptr<Iterator> it = snap.NewIterator(r.lower, r.upper);
    it->SeekToFirst();
    if (!it->Valid()) {
      s = it->status();
      if (!s.ok()) break;
      continue;  // an empty range has no file
    }
    SnapFileMeta meta;
    meta.cf = r.cf;
    s = WriteOneSst(*it, std::string(prefix) + "_" + r.cf + ".sst", &meta);
    if (!s.ok()) break;
    metas.push_back(std::move(meta));
  }
  if (!s.ok()) {
    for (const SnapFileMeta& m : metas) {
      state_->RemoveQuietly(state_->PathOf(m.name));
    }
    return s;
  }
  return metas;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SnapDir>> SnapDir::Open(
    std::string path, std::shared_ptr<InMemoryEnv> memory_env) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (path.empty()) return absl::InvalidArgumentError("empty SnapDir path");
  auto state = std::make_shared<DirState>();
  state->path = path;
  state->env = memory_env ? memory_env->env() : rocksdb::Env::Default();
  state->memory_env = std::move(memory_env);
  // Create every missing ancestor too.
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    std::string dir = path.substr(0, slash);
    absl::Status s = FromRocks(state->env->CreateDirIfMissing(dir));
    if (!s.ok()) return s;
    if (slash == std::string::npos) break;
  }
  if (state->memory_env == nullptr) {
    absl::Status s = FromRocks(state->env->NewDirectory(path, &state->dir));
    if (!s.ok()) return s;
  }
  return std::unique_ptr<SnapDir>(new EnvSnapDir(std::move(state)));
}

}  // namespace raftkv::storage
