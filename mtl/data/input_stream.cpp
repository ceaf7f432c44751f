#include "rechub/mtl/data/input_stream.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

#include "rechub/core/error.h"
#include "rechub/mtl/data/big_buffer.h"

namespace rechub::data {

namespace {

std::string errno_text() { return std::strerror(errno); }

// Plain files are read() into one reused buffer rather than memory-mapped: a mapping takes a page
// fault per 4 KiB on first touch (costly on virtual machines), the buffer none after the first
// window, and resident memory stays at the window size whatever the file size.
class ReadInput final : public InputStream {
 public:
  ReadInput(const std::string& path, int fd) : path_(path), fd_(fd) {
    ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
  }
  ~ReadInput() override { ::close(fd_); }
  InputWindow window(size_t want) override {
    while (end_ - begin_ < want && !eof_) {
      if (begin_ > 0) {  // the unconsumed tail (an incomplete record) moves to the front
        std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      if (buf_.size() < want) buf_.resize(want);
      const ssize_t got = ::read(fd_, buf_.data() + end_, buf_.size() - end_);
      if (got < 0) {
        if (errno == EINTR) continue;
        throw Error(path_ + ": read failed after " + std::to_string(pos_ + (end_ - begin_)) +
                    " bytes: " + errno_text());
      }
      if (got == 0)
        eof_ = true;
      else
        end_ += static_cast<size_t>(got);
    }
    const size_t left = end_ - begin_;
    const size_t n = want < left ? want : left;
    return {{buf_.data() + begin_, n}, eof_ && n == left};
  }
  void consume(size_t n) override {
    begin_ += n;
    pos_ += n;
  }
  uint64_t position() const override { return pos_; }

 private:
  std::string path_;
  int fd_;
  BigVector<char> buf_;
  size_t begin_ = 0, end_ = 0;
  uint64_t pos_ = 0;
  bool eof_ = false;
};

class MemoryInput final : public InputStream {
 public:
  explicit MemoryInput(std::string_view b) : bytes_(b) {}
  InputWindow window(size_t want) override {
    const size_t left = bytes_.size() - pos_;
    const size_t n = want < left ? want : left;
    return {bytes_.substr(pos_, n), n == left};
  }
  void consume(size_t n) override { pos_ += n; }
  uint64_t position() const override { return pos_; }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

class GzipInput final : public InputStream {
 public:
  GzipInput(const std::string& path, int fd) : path_(path) {
    gz_ = gzdopen(fd, "rb");
    if (!gz_) {
      ::close(fd);
      throw Error(path + ": cannot open as gzip");
    }
    gzbuffer(gz_, 1 << 18);
  }
  ~GzipInput() override {
    if (gz_) gzclose(gz_);
  }
  InputWindow window(size_t want) override {
    while (buf_.size() - begin_ < want && !eof_) {
      if (begin_ > 0) {  // keep the unconsumed tail at the front; it is at most one window
        buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(begin_));
        begin_ = 0;
      }
      const size_t need = want - buf_.size();
      const size_t chunk = need > (size_t(1) << 20) ? need : (size_t(1) << 20);
      const size_t old = buf_.size();
      buf_.resize(old + chunk);
      const unsigned ask = chunk > size_t(INT_MAX) ? unsigned(INT_MAX) : unsigned(chunk);
      const int got = gzread(gz_, buf_.data() + old, ask);
      if (got < 0) {
        int errnum = 0;
        const char* msg = gzerror(gz_, &errnum);
        throw Error(path_ + ": corrupt gzip data after " + std::to_string(pos_ + (old - begin_)) +
                    " decompressed bytes: " + (msg ? msg : "unknown zlib error"));
      }
      buf_.resize(old + static_cast<size_t>(got));
      if (got == 0) {
        // zlib reports a truncated stream only through gzerror after EOF.
        int errnum = 0;
        const char* msg = gzerror(gz_, &errnum);
        if (errnum != Z_OK && errnum != Z_BUF_ERROR)
          throw Error(path_ + ": corrupt gzip data: " + (msg ? msg : "unknown zlib error"));
        if (errnum == Z_BUF_ERROR) throw Error(path_ + ": truncated gzip file (the compressed stream ends early)");
        eof_ = true;
      }
    }
    const size_t left = buf_.size() - begin_;
    const size_t n = want < left ? want : left;
    return {{buf_.data() + begin_, n}, eof_ && n == left};
  }
  void consume(size_t n) override {
    begin_ += n;
    pos_ += n;
  }
  uint64_t position() const override { return pos_; }

 private:
  std::string path_;
  gzFile gz_ = nullptr;
  std::vector<char> buf_;
  size_t begin_ = 0;
  uint64_t pos_ = 0;
  bool eof_ = false;
};

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string e = errno_text();
    ::close(fd);
    throw Error(path + ": cannot stat: " + e);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": is a directory, not a file");
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const std::string e = errno_text();
      ::close(fd);
      throw Error(path + ": cannot memory-map: " + e);
    }
    f->data_ = static_cast<const char*>(p);
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<char*>(data_), size_);
}

FileStamp file_stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw Error(path + ": cannot stat: " + errno_text());
  return {static_cast<uint64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec};
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::unique_ptr<InputStream> open_input(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + errno_text());
  unsigned char magic[2] = {0, 0};
  const ssize_t got = ::pread(fd, magic, 2, 0);
  if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) return std::make_unique<GzipInput>(path, fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    const bool dir = S_ISDIR(st.st_mode);
    const std::string e = errno_text();
    ::close(fd);
    throw Error(path + (dir ? ": is a directory, not a file" : ": cannot stat: " + e));
  }
  return std::make_unique<ReadInput>(path, fd);
}

std::unique_ptr<InputStream> memory_input(std::string_view bytes) { return std::make_unique<MemoryInput>(bytes); }

}  // namespace rechub::data
