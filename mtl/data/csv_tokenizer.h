#pragma once
// The CSV tokenizer shared by every reader (internal to mtl/data). One pass, no allocation on the
// unquoted path: a field is a view into the input; quoted fields with doubled quotes are unescaped
// into the handler's scratch string.
//
// Records end at '\n' (an '\r' before it is dropped); blank lines are skipped; a quoted field may
// hold separators and newlines. When `eof` is false a record not yet ended by a newline is left
// for the next window: tokenize() returns the end of the last complete record and `line` counts
// the newlines up to there (physical lines, so quoted newlines count).
//
// Handler:
//   void begin_record(int64_t line);          // line = newlines before the record
//   void field(int index, std::string_view value, bool quoted);
//   void tokenizer_problem(int index, std::string message);
//   bool end_record(int fields);              // false: stop after this record
//   std::string& scratch();
// A record may be abandoned after begin_record (incomplete at the window's end); the handler must
// keep nothing of it until end_record.
#include <algorithm>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace rechub::data::detail {

struct TokenizerConfig {
  std::string_view sep;  // non-empty, no quote, no newline
  char quote = '"';      // '\0': no quoting
  bool trim = false;
};

inline bool is_blank(char c) { return c == ' ' || c == '\t'; }

template <bool kSingleCharSep, class Handler>
[[gnu::always_inline]] inline const char* tokenize_body(const char* p, const char* const end, const bool eof,
                                                        const TokenizerConfig& cfg, Handler& h, int64_t& line) {
  const char sep0 = cfg.sep[0];
  const size_t seplen = cfg.sep.size();
  const bool quoting = cfg.quote != '\0';
  auto sep_at = [&](const char* q) -> bool {
    if constexpr (kSingleCharSep) {
      return *q == sep0;
    } else {
      return *q == sep0 && static_cast<size_t>(end - q) >= seplen && std::memcmp(q, cfg.sep.data(), seplen) == 0;
    }
  };
  while (p < end) {
    const char* const rec = p;
    const int64_t rec_line = line;
    {  // blank line (spaces and tabs only, when trimming): skipped
      const char* q = p;
      if (cfg.trim)
        while (q < end && is_blank(*q)) ++q;
      if (q < end && *q == '\n') {
        p = q + 1;
        ++line;
        continue;
      }
      if (q + 1 < end && *q == '\r' && q[1] == '\n') {
        p = q + 2;
        ++line;
        continue;
      }
      if (q == end || (*q == '\r' && q + 1 == end)) {
        if (!eof) return rec;
        return end;
      }
    }
    h.begin_record(rec_line);
    int idx = 0;
    for (;;) {
      const char* f = p;
      if (cfg.trim)
        while (f < end && is_blank(*f)) ++f;
      bool record_end = false;
      if (quoting && f < end && *f == cfg.quote) {
        std::string& s = h.scratch();
        s.clear();
        const char* q = f + 1;
        const char* seg = q;
        int64_t nl = 0;
        bool closed = false;
        for (;;) {
          const auto* qq = static_cast<const char*>(std::memchr(q, cfg.quote, static_cast<size_t>(end - q)));
          nl += std::count(q, qq ? qq : end, '\n');
          if (!qq) {
            q = end;
            break;
          }
          if (qq + 1 < end && qq[1] == cfg.quote) {  // "" is one quote
            s.append(seg, static_cast<size_t>(qq + 1 - seg));
            q = qq + 2;
            seg = q;
            continue;
          }
          if (qq + 1 == end && !eof) {  // cannot tell " from "" yet
            q = end;
            break;
          }
          s.append(seg, static_cast<size_t>(qq - seg));
          q = qq + 1;
          closed = true;
          break;
        }
        if (!closed) {
          if (!eof) {
            line = rec_line;
            return rec;
          }
          s.append(seg, static_cast<size_t>(end - seg));
          line += nl;
          h.field(idx, s, true);
          h.tokenizer_problem(idx, "a quoted field is never closed (its opening quote runs to the end of the file)");
          h.end_record(idx + 1);
          return end;
        }
        line += nl;
        const char* a = q;
        if (cfg.trim)
          while (a < end && is_blank(*a)) ++a;
        if (a == end || (*a == '\r' && a + 1 == end)) {
          if (!eof) {
            line = rec_line;
            return rec;
          }
          h.field(idx, s, true);
          p = end;
          record_end = true;
        } else if (*a == '\n') {
          h.field(idx, s, true);
          p = a + 1;
          ++line;
          record_end = true;
        } else if (*a == '\r' && a[1] == '\n') {
          h.field(idx, s, true);
          p = a + 2;
          ++line;
          record_end = true;
        } else if (sep_at(a)) {
          h.field(idx, s, true);
          p = a + seplen;
        } else {  // text after the closing quote: a problem; the field runs to the next separator
          const char* q2 = a;
          while (q2 < end && *q2 != '\n' && !sep_at(q2)) ++q2;
          if (q2 == end && !eof) {
            line = rec_line;
            return rec;
          }
          h.field(idx, s, true);
          h.tokenizer_problem(idx, "unexpected text after a closing quote");
          if (q2 == end) {
            p = end;
            record_end = true;
          } else if (*q2 == '\n') {
            p = q2 + 1;
            ++line;
            record_end = true;
          } else {
            p = q2 + seplen;
          }
        }
      } else {
        const char* q = f;
        if constexpr (kSingleCharSep) {
          while (q < end && *q != sep0 && *q != '\n') ++q;
        } else {
          while (q < end && *q != '\n' && !sep_at(q)) ++q;
        }
        if (q == end && !eof) {
          line = rec_line;
          return rec;
        }
        const bool nl_end = q < end && *q == '\n';
        const char* te = q;
        if ((nl_end || q == end) && te > f && te[-1] == '\r') --te;
        if (cfg.trim)
          while (te > f && is_blank(te[-1])) --te;
        h.field(idx, std::string_view(f, static_cast<size_t>(te - f)), false);
        if (q == end) {
          p = end;
          record_end = true;
        } else if (nl_end) {
          p = q + 1;
          ++line;
          record_end = true;
        } else {
          p = q + seplen;
        }
      }
      if (record_end) break;
      ++idx;
    }
    if (!h.end_record(idx + 1)) return p;
  }
  return p;
}

// The line counter lives in a register while tokenizing (a reference into shared memory would be
// a store per line, and false sharing between parser threads).
template <bool kSingleCharSep, class Handler>
const char* tokenize(const char* p, const char* end, bool eof, const TokenizerConfig& cfg, Handler& h,
                     int64_t& line_io) {
  int64_t line = line_io;
  const char* r = tokenize_body<kSingleCharSep>(p, end, eof, cfg, h, line);
  line_io = line;
  return r;
}

// Dispatches on the separator's length.
template <class Handler>
const char* tokenize_any(const char* p, const char* end, bool eof, const TokenizerConfig& cfg, Handler& h,
                         int64_t& line) {
  if (cfg.sep.size() == 1) return tokenize<true>(p, end, eof, cfg, h, line);
  return tokenize<false>(p, end, eof, cfg, h, line);
}

enum class NumStatus { ok, not_number, not_finite, out_of_range };

// from_chars on a double, then to float: the value pandas would read, rounded once to float32.
// Fast path for plain decimals ([+-]digits[.digits], at most 15 digits, no exponent): the digits
// and the power of ten are exact doubles, so their quotient is the correctly rounded double
// (Clinger's fast path), the same one std::from_chars returns.
inline NumStatus parse_float(std::string_view v, float& out) {
  static constexpr double kPow10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                      1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
  const char* b = v.data();
  const char* e = b + v.size();
  {
    const char* p = b;
    const bool neg = p < e && *p == '-';
    if (p < e && (*p == '-' || *p == '+')) ++p;
    uint64_t m = 0;
    int digits = 0, frac = 0;
    bool dot = false;
    for (; p < e; ++p) {
      const unsigned d = static_cast<unsigned char>(*p) - unsigned('0');
      if (d <= 9) {
        m = m * 10 + d;
        ++digits;
        frac += dot;
      } else if (*p == '.' && !dot) {
        dot = true;
      } else {
        break;
      }
    }
    if (p == e && digits > 0 && digits <= 15) {
      const double d = static_cast<double>(m) / kPow10[frac];
      out = static_cast<float>(neg ? -d : d);
      return NumStatus::ok;
    }
  }
  if (b < e && *b == '+') {  // from_chars refuses a plus sign
    ++b;
    if (b < e && *b == '-') return NumStatus::not_number;
  }
  if (b == e) return NumStatus::not_number;
  double d = 0;
  const auto r = std::from_chars(b, e, d);
  if (r.ec == std::errc::invalid_argument || r.ptr != e) return NumStatus::not_number;
  if (r.ec == std::errc::result_out_of_range) return NumStatus::out_of_range;
  if (!std::isfinite(d)) return NumStatus::not_finite;
  if (std::fabs(d) > double(FLT_MAX)) return NumStatus::out_of_range;
  out = static_cast<float>(d);
  return NumStatus::ok;
}

// A value for a message: printable, at most 40 characters.
std::string display_value(std::string_view v);

}  // namespace rechub::data::detail
