/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * carehare-wire: the private, sans-I/O AMQP 0-9-1 codec.
 *
 * Everything here works on caller-owned memory: no sockets, no timers, no
 * global state.  Decoders validate strictly (every length is checked against
 * the bytes that remain before anything is read or allocated) and report
 * failures in the CAREHARE_WIRE_ERROR domain; carehare_wire_error_reply_code()
 * turns such an error into the AMQP reply code to close with.  Encoders append
 * complete frames to a GByteArray and leave it untouched when they fail.
 *
 * A receiver does, per chunk of bytes read:
 *
 *   while ((n = carehare_frame_decode (buf, len, frame_max, &frame, &error)) > 0)
 *     {
 *       switch (frame.type)
 *         {
 *         case CAREHARE_FRAME_METHOD:
 *           carehare_method_decode (frame.payload, frame.size, &method, &error); ...
 *         case CAREHARE_FRAME_HEADER:
 *           carehare_content_header_decode (frame.payload, frame.size, limit,
 *                                           &class_id, &body_size, &props, &error); ...
 *         case CAREHARE_FRAME_BODY: (frame.payload, frame.size) is body data
 *         case CAREHARE_FRAME_HEARTBEAT: nothing to decode
 *         }
 *       buf += n; len -= n;
 *     }
 *   n == 0: keep the rest and read more; n == -1: close the connection with
 *   carehare_wire_error_reply_code (error).
 *
 * Field tables are GVariant a{sv}; the mapping is documented at the top of
 * carehare-wire.c and in docs/field-tables.md.
 */
#pragma once

#include <glib.h>

#include "carehare-wire-methods.h"

G_BEGIN_DECLS

#define CAREHARE_FRAME_METHOD 1
#define CAREHARE_FRAME_HEADER 2
#define CAREHARE_FRAME_BODY 3
#define CAREHARE_FRAME_HEARTBEAT 8
#define CAREHARE_FRAME_END 0xCE

/* frame_min_size of the spec: the smallest frame_max a peer may negotiate,
 * and the limit that applies before connection.tune has been received. */
#define CAREHARE_FRAME_MIN_SIZE 4096
/* 7-byte frame header (type, channel, size) + the frame-end octet: a body
 * frame carries at most frame_max - CAREHARE_FRAME_OVERHEAD bytes. */
#define CAREHARE_FRAME_HEADER_SIZE 7
#define CAREHARE_FRAME_OVERHEAD 8
/* Tables and arrays nested deeper than this are rejected (the outermost
 * table is level 1). */
#define CAREHARE_WIRE_MAX_NESTING 64

/* "AMQP" 0 0 9 1: what a client sends before anything else. */
extern const guint8 carehare_wire_protocol_header[8];

/**
 * CarehareWireError:
 * @CAREHARE_WIRE_ERROR_BAD_FRAME_END: the octet after the payload is not 0xCE (501)
 * @CAREHARE_WIRE_ERROR_UNKNOWN_FRAME_TYPE: frame type not 1, 2, 3 or 8 (501)
 * @CAREHARE_WIRE_ERROR_FRAME_TOO_LARGE: payload + 8 exceeds frame_max (501)
 * @CAREHARE_WIRE_ERROR_BAD_HEARTBEAT: a heartbeat frame on a channel other
 *   than 0 or with a payload (501)
 * @CAREHARE_WIRE_ERROR_TRUNCATED: a length or fixed-size field points past
 *   the end of the payload (502)
 * @CAREHARE_WIRE_ERROR_BAD_SHORT_STRING: a short string argument of a
 *   method that is not valid UTF-8 or contains NUL (502); properties, table
 *   keys and the strings of basic.deliver, basic.return and basic.get-ok
 *   are another program's bytes, and the reply texts of connection.close
 *   and channel.close and the reason of connection.blocked are text for a
 *   person: those are decoded leniently instead
 * @CAREHARE_WIRE_ERROR_NESTING_TOO_DEEP: tables/arrays nested deeper than
 *   CAREHARE_WIRE_MAX_NESTING (502)
 * @CAREHARE_WIRE_ERROR_BAD_FIELD_TYPE: unknown table value type octet (502)
 * @CAREHARE_WIRE_ERROR_UNKNOWN_METHOD: class/method id pair not known (540)
 * @CAREHARE_WIRE_ERROR_TRAILING_BYTES: the payload is longer than its
 *   arguments (or a table than its declared length) (502)
 * @CAREHARE_WIRE_ERROR_BODY_TOO_LARGE: content header body size above the
 *   caller's limit (311 CONTENT_TOO_LARGE, a channel-level error)
 * @CAREHARE_WIRE_ERROR_BAD_CONTENT_HEADER: weight not 0, a class without
 *   content, or property flag bits that no property uses (502)
 * @CAREHARE_WIRE_ERROR_UNENCODABLE: encode side only: a value has no AMQP
 *   encoding (shortstr over 255 bytes or not UTF-8, GVariant type with no
 *   table mapping, int8 out of range, too deep...) (reply code 0)
 *
 * Each decode failure has its own code; messages name the problem with
 * offsets (relative to the start of the frame payload or table) and values.
 */
typedef enum {
  CAREHARE_WIRE_ERROR_BAD_FRAME_END,
  CAREHARE_WIRE_ERROR_UNKNOWN_FRAME_TYPE,
  CAREHARE_WIRE_ERROR_FRAME_TOO_LARGE,
  CAREHARE_WIRE_ERROR_BAD_HEARTBEAT,
  CAREHARE_WIRE_ERROR_TRUNCATED,
  CAREHARE_WIRE_ERROR_BAD_SHORT_STRING,
  CAREHARE_WIRE_ERROR_NESTING_TOO_DEEP,
  CAREHARE_WIRE_ERROR_BAD_FIELD_TYPE,
  CAREHARE_WIRE_ERROR_UNKNOWN_METHOD,
  CAREHARE_WIRE_ERROR_TRAILING_BYTES,
  CAREHARE_WIRE_ERROR_BODY_TOO_LARGE,
  CAREHARE_WIRE_ERROR_BAD_CONTENT_HEADER,
  CAREHARE_WIRE_ERROR_UNENCODABLE,
} CarehareWireError;

#define CAREHARE_WIRE_ERROR (carehare_wire_error_quark ())
GQuark carehare_wire_error_quark (void);

/* The AMQP reply code to close with after a decode error: 501 FRAME_ERROR
 * for frame-level problems, 502 SYNTAX_ERROR for malformed method/header
 * payloads, 540 NOT_IMPLEMENTED for unknown methods, 311 CONTENT_TOO_LARGE
 * for BODY_TOO_LARGE (a soft error: closing only the channel is enough).
 * Returns 0 for UNENCODABLE (the caller's own value, not a protocol
 * violation) and for errors outside CAREHARE_WIRE_ERROR. */
guint16 carehare_wire_error_reply_code (const GError *error);

/* ---------------------------------------------------------------- frames */

typedef struct {
  guint8 type;             /* CAREHARE_FRAME_METHOD ... */
  guint16 channel;
  const guint8 *payload;   /* points into the caller's buffer; NULL if size 0 */
  guint32 size;
} CarehareFrame;

/* Decodes one frame from the front of @data.  Returns the number of bytes the
 * frame occupies (> 0) and fills *frame; 0 if more bytes are needed (never
 * reads past @len; *frame untouched); -1 with @error on a bad frame.
 *
 * The frame type is checked as soon as one byte is there and the size
 * against @frame_max as soon as the 7-byte header is, so a bad peer is
 * caught before its payload is buffered.  @frame_max is the negotiated
 * maximum frame size including the 8 bytes of overhead; 0 means no limit
 * (pass CAREHARE_FRAME_MIN_SIZE before connection.tune).  Heartbeats must
 * be on channel 0 with an empty payload.  Never allocates (except @error). */
gssize carehare_frame_decode (const guint8   *data,
                              gsize           len,
                              guint32         frame_max,
                              CarehareFrame  *frame,
                              GError        **error);

/* --------------------------------------------------------------- methods */

/* Decodes a method frame payload (class id, method id, arguments).  Strings,
 * GBytes and tables in *method are newly allocated and owned by *method;
 * free them with carehare_method_clear().  Every shortstr must be valid
 * UTF-8 without NUL (BAD_SHORT_STRING), except in basic.deliver,
 * basic.return and basic.get-ok, whose strings say where another program
 * published a message, and connection.close, channel.close and
 * connection.blocked, whose strings are text for a person (RabbitMQ quotes
 * names other clients chose): those, and table keys, are decoded leniently, every
 * byte that is not part of valid UTF-8, and NUL, becoming U+FFFD (cut to
 * 255 bytes).  On error *method is left cleared
 * (all zero), so clearing it again is harmless.  Unknown class/method ->
 * UNKNOWN_METHOD; a payload longer than the arguments -> TRAILING_BYTES. */
gboolean carehare_method_decode (const guint8    *payload,
                                 gsize            size,
                                 CarehareMethod  *method,
                                 GError         **error);

/* Frees what carehare_method_decode() allocated and zeroes *method.  Never
 * call it on a method filled with borrowed pointers for encoding. */
void carehare_method_clear (CarehareMethod *method);

/* Fills *@dest with a deep copy of @src, whose pointers may be borrowed
 * (a method filled for encoding) or owned: *@dest owns its strings, GBytes
 * and tables (a table must not be floating), and is freed with
 * carehare_method_clear(). For a method that must outlive its caller's
 * borrowed pointers (a call queued for another thread). */
void carehare_method_copy (const CarehareMethod *src,
                           CarehareMethod       *dest);

/* Encoding: fill a CarehareMethod with BORROWED pointers (a NULL shortstr
 * encodes as "", a NULL table as an empty table, a NULL longstr as empty)
 * and do not clear it.  Appends one complete method frame (header, payload,
 * frame-end) to @out.  On failure (UNENCODABLE: unknown id, shortstr over
 * 255 bytes or not UTF-8, unencodable table) returns FALSE and leaves @out
 * exactly as it was.  The caller checks the result against frame_max. */
gboolean carehare_wire_append_method_frame (GByteArray            *out,
                                            guint16                channel,
                                            const CarehareMethod  *method,
                                            GError               **error);

/* --------------------------------------------------------------- content */

/* The 14 basic properties.  @flags says which are present
 * (CareharePropertyFlags); the others are 0/NULL.  Decoded properties are
 * owned (free with carehare_basic_properties_clear()); for encoding, fill
 * with borrowed pointers and set @flags; a flagged NULL string encodes as
 * "" and a flagged NULL headers as an empty table. */
typedef struct {
  guint16 flags;
  char *content_type;
  char *content_encoding;
  GVariant *headers;        /* a{sv} */
  guint8 delivery_mode;
  guint8 priority;
  char *correlation_id;
  char *reply_to;
  char *expiration;
  char *message_id;
  guint64 timestamp;        /* seconds since the epoch */
  char *type;
  char *user_id;
  char *app_id;
  char *cluster_id;
} CarehareBasicProperties;

/* Decodes a content header frame payload: class id (must be basic), weight
 * (must be 0), body size and properties.  A body size above @max_body_size
 * -> BODY_TOO_LARGE naming both numbers (pass G_MAXUINT64 for no limit).
 * Property short strings are decoded leniently, as in methods.  Results are
 * owned; on error *props is left cleared.  An error past a sound class,
 * weight and body size (unknown property flag bits, a malformed or too
 * deeply nested headers table, BODY_TOO_LARGE) still sets *class_id and
 * *body_size, so the caller can skip that message's body; on other
 * errors they are 0. */
gboolean carehare_content_header_decode (const guint8             *payload,
                                         gsize                     size,
                                         guint64                   max_body_size,
                                         guint16                  *class_id,
                                         guint64                  *body_size,
                                         CarehareBasicProperties  *props,
                                         GError                  **error);

/* Frees what carehare_content_header_decode() allocated and zeroes *props. */
void carehare_basic_properties_clear (CarehareBasicProperties *props);

/* Appends one content header frame.  @props is borrowed and nullable (no
 * properties).  Fails with UNENCODABLE (leaving @out as it was) for flag
 * bits 0-1, a string over 255 bytes or not UTF-8, or an unencodable
 * headers table. */
gboolean carehare_wire_append_header_frame (GByteArray                     *out,
                                            guint16                         channel,
                                            guint16                         class_id,
                                            guint64                         body_size,
                                            const CarehareBasicProperties  *props,
                                            GError                        **error);

/* Appends one body frame carrying @size bytes; the caller splits bodies at
 * frame_max - CAREHARE_FRAME_OVERHEAD. */
void carehare_wire_append_body_frame (GByteArray   *out,
                                      guint16       channel,
                                      const guint8 *data,
                                      gsize         size);

/* Appends a heartbeat frame: 08 0000 00000000 CE. */
void carehare_wire_append_heartbeat_frame (GByteArray *out);

/* ---------------------------------------------------------- field tables */

/* Decodes a complete field table including its 4-byte length; @size must be
 * exactly 4 + that length (less -> TRUNCATED, more -> TRAILING_BYTES).
 * Returns a new (non-floating) a{sv}, or NULL with @error. */
GVariant *carehare_wire_table_decode (const guint8  *data,
                                      gsize          size,
                                      GError       **error);

/* Appends the 4-byte length and entries of @table (a{sv} or any a{s?};
 * NULL = empty table).  On failure (UNENCODABLE) @out is unchanged.
 * A floating @table is not sunk. */
gboolean carehare_wire_table_encode (GByteArray  *out,
                                     GVariant    *table,
                                     GError     **error);

G_END_DECLS
