#include "json.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>

#include "common.h"

namespace roost::json {

ParseError::ParseError(size_t offset, const std::string& message)
    : std::runtime_error("at byte " + std::to_string(offset) + ": " + message), offset_(offset), message_(message) {}

const Value* Value::find(std::string_view key) const {
  for (const auto& [k, v] : members)
    if (k == key) return &v;
  return nullptr;
}

namespace {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// Length of the well-formed UTF-8 sequence at s[0..n) (Unicode table 3-7), 0 if
// ill-formed: overlongs, encoded surrogates and code points above U+10FFFF.
size_t utf8_sequence_length(const unsigned char* s, size_t n) {
  unsigned char c = s[0];
  auto cont = [&](size_t i, unsigned char lo, unsigned char hi) { return i < n && s[i] >= lo && s[i] <= hi; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1, 0x80, 0xBF) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2, 0x80, 0xBF) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
  return 0;
}

std::string describe(const char* p, const char* end) {
  if (p >= end) return "end of input";
  unsigned char c = (unsigned char)*p;
  if (c >= 0x20 && c < 0x7F) return std::string("'") + char(c) + "'";
  static const char* hex = "0123456789abcdef";
  return std::string("byte 0x") + hex[c >> 4] + hex[c & 15];
}

class Parser {
 public:
  Parser(std::string_view text, const Limits& limits)
      : begin_(text.data()), p_(text.data()), end_(text.data() + text.size()), limits_(limits) {}

  Value document() {
    if (end_ - p_ >= 3 && std::memcmp(p_, "\xEF\xBB\xBF", 3) == 0) p_ += 3;
    skip_ws();
    Value v = value(0);
    skip_ws();
    if (p_ != end_) fail("unexpected " + describe(p_, end_) + " after the JSON value");
    return v;
  }

 private:
  const char* begin_;
  const char* p_;
  const char* end_;
  const Limits& limits_;

  [[noreturn]] void fail(const std::string& message) { fail_at(p_, message); }
  [[noreturn]] void fail_at(const char* at, const std::string& message) {
    throw ParseError(size_t(at - begin_), message);
  }

  void skip_ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }

  void expect_literal(const char* word) {
    size_t n = std::strlen(word);
    if (size_t(end_ - p_) < n || std::memcmp(p_, word, n) != 0) fail("invalid literal (expected " + std::string(word) + ")");
    p_ += n;
  }

  Value value(int depth) {
    if (p_ >= end_) fail("unexpected end of input, expected a value");
    Value v;
    v.offset = size_t(p_ - begin_);
    switch (*p_) {
      case '{': object(v, depth + 1); break;
      case '[': array(v, depth + 1); break;
      case '"': v.type = Type::String; v.text = string(); break;
      case 't': expect_literal("true"); v.type = Type::Bool; v.boolean = true; break;
      case 'f': expect_literal("false"); v.type = Type::Bool; v.boolean = false; break;
      case 'n': expect_literal("null"); v.type = Type::Null; break;
      default:
        if (*p_ == '-' || (*p_ >= '0' && *p_ <= '9')) number(v);
        else fail("unexpected " + describe(p_, end_) + ", expected a value");
    }
    return v;
  }

  void check_depth(int depth) {
    if (depth > limits_.max_depth) fail("nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
  }

  void object(Value& v, int depth) {
    check_depth(depth);
    v.type = Type::Object;
    ++p_;  // '{'
    skip_ws();
    if (p_ < end_ && *p_ == '}') { ++p_; return; }
    std::vector<const char*> key_at;  // for the duplicate-key message
    for (;;) {
      skip_ws();
      if (p_ >= end_ || *p_ != '"') fail("unexpected " + describe(p_, end_) + ", expected a string key");
      key_at.push_back(p_);
      std::string key = string();
      skip_ws();
      if (p_ >= end_ || *p_ != ':') fail("unexpected " + describe(p_, end_) + ", expected ':' after object key");
      ++p_;
      skip_ws();
      v.members.emplace_back(std::move(key), value(depth));
      skip_ws();
      if (p_ < end_ && *p_ == ',') { ++p_; continue; }
      if (p_ < end_ && *p_ == '}') { ++p_; break; }
      fail("unexpected " + describe(p_, end_) + ", expected ',' or '}' in object");
    }
    check_unique_keys(v, key_at);
  }

  // Duplicate keys make a document ambiguous (which value wins?); refuse them.
  // Sorting keeps this O(n log n) for headers with thousands of tensors.
  void check_unique_keys(const Value& v, const std::vector<const char*>& key_at) {
    size_t n = v.members.size();
    if (n < 2) return;
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      int c = v.members[a].first.compare(v.members[b].first);
      return c != 0 ? c < 0 : a < b;
    });
    for (size_t i = 1; i < n; ++i) {
      if (v.members[order[i]].first == v.members[order[i - 1]].first) {
        Value key;
        key.type = Type::String;
        key.text = v.members[order[i]].first;
        fail_at(key_at[order[i]], "duplicate object key " + dump(key));
      }
    }
  }

  void array(Value& v, int depth) {
    check_depth(depth);
    v.type = Type::Array;
    ++p_;  // '['
    skip_ws();
    if (p_ < end_ && *p_ == ']') { ++p_; return; }
    for (;;) {
      skip_ws();
      v.items.push_back(value(depth));
      skip_ws();
      if (p_ < end_ && *p_ == ',') { ++p_; continue; }
      if (p_ < end_ && *p_ == ']') { ++p_; break; }
      fail("unexpected " + describe(p_, end_) + ", expected ',' or ']' in array");
    }
  }

  uint32_t hex4() {
    if (end_ - p_ < 4) fail("truncated \\u escape");
    uint32_t x = 0;
    for (int i = 0; i < 4; ++i) {
      char c = p_[i];
      uint32_t d;
      if (c >= '0' && c <= '9') d = uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') d = uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') d = uint32_t(c - 'A' + 10);
      else fail_at(p_ + i, "invalid hex digit in \\u escape");
      x = x * 16 + d;
    }
    p_ += 4;
    return x;
  }

  std::string string() {
    const char* start = p_;
    ++p_;  // '"'
    std::string out;
    for (;;) {
      if (p_ >= end_) fail_at(start, "unterminated string");
      unsigned char c = (unsigned char)*p_;
      if (c == '"') { ++p_; return out; }
      if (c < 0x20) fail("unescaped control character in string");
      if (c == '\\') {
        const char* esc = p_;
        ++p_;
        if (p_ >= end_) fail_at(start, "unterminated string");
        char e = *p_++;
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            uint32_t cp = hex4();
            if (cp >= 0xDC00 && cp <= 0xDFFF) fail_at(esc, "lone low surrogate in \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              // A high surrogate must be followed by an escaped low one: the pair is one code point.
              if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') fail_at(esc, "lone high surrogate in \\u escape");
              p_ += 2;
              uint32_t lo = hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) fail_at(esc, "high surrogate not followed by a low surrogate");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            append_utf8(out, cp);
            break;
          }
          default: fail_at(esc, "invalid escape \\" + describe(p_ - 1, end_));
        }
        continue;
      }
      if (c < 0x80) { out += char(c); ++p_; continue; }
      size_t n = utf8_sequence_length((const unsigned char*)p_, size_t(end_ - p_));
      if (n == 0) fail("invalid UTF-8 in string");
      out.append(p_, n);
      p_ += n;
    }
  }

  void number(Value& v) {
    const char* start = p_;
    bool negative = false;
    if (*p_ == '-') { negative = true; ++p_; }
    if (p_ >= end_ || *p_ < '0' || *p_ > '9') fail("invalid number: expected a digit");
    const char* digits = p_;
    if (*p_ == '0') {
      ++p_;
      if (p_ < end_ && *p_ >= '0' && *p_ <= '9') fail_at(start, "invalid number: leading zero");
    } else {
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    const char* digits_end = p_;
    bool integral = true;
    if (p_ < end_ && *p_ == '.') {
      integral = false;
      ++p_;
      if (p_ >= end_ || *p_ < '0' || *p_ > '9') fail("invalid number: expected a digit after '.'");
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      integral = false;
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ >= end_ || *p_ < '0' || *p_ > '9') fail("invalid number: expected a digit in the exponent");
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    v.type = Type::Number;
    v.text.assign(start, p_);
    // from_chars is locale-independent (strtod would read ',' as the point in some locales).
    auto [ptr, ec] = std::from_chars(start, p_, v.number);
    if (ec == std::errc::result_out_of_range) fail_at(start, "number out of range: " + v.text);
    if (ec != std::errc() || ptr != p_) fail_at(start, "invalid number: " + v.text);
    if (!integral) return;
    // Exact integer: accumulate the magnitude with overflow detection.
    uint64_t mag = 0;
    bool overflow = false;
    for (const char* d = digits; d < digits_end; ++d) {
      if (__builtin_mul_overflow(mag, 10u, &mag) || __builtin_add_overflow(mag, uint64_t(*d - '0'), &mag)) {
        overflow = true;
        break;
      }
    }
    if (overflow) return;  // only the double survives
    if (negative) {
      if (mag <= uint64_t(INT64_MAX) + 1) { v.has_i64 = true; v.i64 = mag == uint64_t(INT64_MAX) + 1 ? INT64_MIN : -int64_t(mag); }
      if (mag == 0) { v.has_u64 = true; v.u64 = 0; }  // -0
    } else {
      v.has_u64 = true;
      v.u64 = mag;
      if (mag <= uint64_t(INT64_MAX)) { v.has_i64 = true; v.i64 = int64_t(mag); }
    }
  }
};

void dump_to(std::string& out, const Value& v, size_t budget) {
  if (out.size() > budget) return;
  switch (v.type) {
    case Type::Null: out += "null"; break;
    case Type::Bool: out += v.boolean ? "true" : "false"; break;
    case Type::Number: out += v.text.empty() ? std::to_string(v.number) : v.text; break;
    case Type::String: {
      static const char* hex = "0123456789abcdef";
      out += '"';
      for (unsigned char c : v.text) {
        if (out.size() > budget) break;
        if (c == '"' || c == '\\') { out += '\\'; out += char(c); }
        else if (c == '\n') out += "\\n";
        else if (c < 0x20 || c == 0x7F) { out += "\\u00"; out += hex[c >> 4]; out += hex[c & 15]; }
        else out += char(c);
      }
      out += '"';
      break;
    }
    case Type::Array:
      out += '[';
      for (size_t i = 0; i < v.items.size() && out.size() <= budget; ++i) {
        if (i) out += ',';
        dump_to(out, v.items[i], budget);
      }
      out += ']';
      break;
    case Type::Object:
      out += '{';
      for (size_t i = 0; i < v.members.size() && out.size() <= budget; ++i) {
        if (i) out += ',';
        Value key;
        key.type = Type::String;
        key.text = v.members[i].first;
        dump_to(out, key, budget);
        out += ':';
        dump_to(out, v.members[i].second, budget);
      }
      out += '}';
      break;
  }
}

}  // namespace

Value parse(std::string_view text, const Limits& limits) {
  if (text.size() > limits.max_bytes)
    throw ParseError(0, "document of " + std::to_string(text.size()) + " bytes exceeds the limit of " +
                            std::to_string(limits.max_bytes));
  return Parser(text, limits).document();
}

std::string dump(const Value& v, size_t max_chars) {
  std::string out;
  dump_to(out, v, max_chars);
  if (out.size() > max_chars) {
    // Cut on a UTF-8 boundary so the message stays valid text.
    size_t cut = max_chars;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out.resize(cut);
    out += "...";
  }
  return out;
}

std::string read_file(const std::string& path, size_t max_bytes) {
  // O_NONBLOCK: a FIFO is refused below (not a regular file) instead of blocking this open.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw Error("E_CHECKPOINT", path + ": cannot open: " + std::strerror(errno));
  struct Closer { int fd; ~Closer() { ::close(fd); } } closer{fd};
  struct stat st;
  if (fstat(fd, &st) != 0) throw Error("E_CHECKPOINT", path + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw Error("E_CHECKPOINT", path + ": not a regular file");
  if (uint64_t(st.st_size) > max_bytes)
    throw Error("E_CHECKPOINT", path + ": " + std::to_string(st.st_size) + " bytes, more than the limit of " +
                                    std::to_string(max_bytes));
  std::string out(size_t(st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error("E_CHECKPOINT", path + ": read failed: " + std::strerror(errno));
    if (n == 0) break;  // shrank while reading: keep what is there
    got += size_t(n);
  }
  out.resize(got);
  return out;
}

}  // namespace roost::json
