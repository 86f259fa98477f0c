// A small, strict JSON parser (RFC 8259) for the files a checkpoint carries:
// config.json, safetensors headers, model.safetensors.index.json.
//
// Strict means: no comments, no trailing commas, no NaN/Infinity, no leading
// zeros, no control characters or invalid UTF-8 in strings, no lone
// surrogates, no duplicate object keys, nothing after the value but
// whitespace. A leading UTF-8 byte order mark is skipped (RFC 8259 allows it).
// Errors are ParseError with the byte offset; callers wrap them in
// roost::Error with their own code (E_CONFIG, E_CHECKPOINT).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace roost::json {

enum class Type { Null, Bool, Number, String, Array, Object };

struct Value {
  Type type = Type::Null;
  bool boolean = false;
  double number = 0.0;  // every Number
  // Integer literals (no fraction, no exponent) are also kept exactly, so that
  // seeds and offsets above 2^53 survive: i64 when they fit int64, u64 when
  // they fit uint64 (both for 0 .. 2^63-1).
  bool has_i64 = false;
  bool has_u64 = false;
  int64_t i64 = 0;
  uint64_t u64 = 0;
  std::string text;                                    // String: decoded UTF-8; Number: the literal
  std::vector<Value> items;                            // Array
  std::vector<std::pair<std::string, Value>> members;  // Object, file order, keys unique
  size_t offset = 0;                                   // where the value starts in the text

  bool is_null() const { return type == Type::Null; }
  bool is_bool() const { return type == Type::Bool; }
  bool is_number() const { return type == Type::Number; }
  bool is_string() const { return type == Type::String; }
  bool is_array() const { return type == Type::Array; }
  bool is_object() const { return type == Type::Object; }
  bool is_integer() const { return has_i64 || has_u64; }
  // The member named key of an object, or null (also null for non-objects).
  const Value* find(std::string_view key) const;
};

struct Limits {
  size_t max_bytes = size_t(64) << 20;  // longer text is refused before parsing
  int max_depth = 256;                  // nesting of arrays/objects; bounds recursion
};

class ParseError : public std::runtime_error {
 public:
  ParseError(size_t offset, const std::string& message);
  size_t offset() const { return offset_; }
  const std::string& message() const { return message_; }  // without the "at byte N: "

 private:
  size_t offset_;
  std::string message_;
};

// Parses one JSON document. what() of a ParseError reads "at byte N: ...".
Value parse(std::string_view text, const Limits& limits = {});

// Compact JSON text of v for messages ("(got ...)"), cut near max_chars with "...".
std::string dump(const Value& v, size_t max_chars = 80);

// Reads a whole (small) file. Throws Error("E_CHECKPOINT") naming the path when
// it is missing, unreadable, not a regular file or larger than max_bytes.
std::string read_file(const std::string& path, size_t max_bytes);

}  // namespace roost::json
