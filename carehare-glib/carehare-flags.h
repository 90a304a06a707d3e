/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(__CAREHARE_GLIB_INSIDE__) && !defined(CAREHARE_COMPILATION)
#error "Only <carehare-glib/carehare-glib.h> can be included directly."
#endif

#include <carehare-glib/carehare-macros.h>

G_BEGIN_DECLS

/**
 * CarehareQueueFlags:
 * @CAREHARE_QUEUE_FLAGS_NONE: no flags.
 * @CAREHARE_QUEUE_FLAGS_PASSIVE: only check that the queue exists; fail
 *   with 404 NOT_FOUND if it does not.
 * @CAREHARE_QUEUE_FLAGS_DURABLE: the queue survives a broker restart.
 * @CAREHARE_QUEUE_FLAGS_EXCLUSIVE: only this connection may use the queue,
 *   and it is deleted when the connection closes.
 * @CAREHARE_QUEUE_FLAGS_AUTO_DELETE: the queue is deleted when its last
 *   consumer goes away.
 *
 * Flags for [method@Carehare.Connection.queue_declare_async].
 */
typedef enum /*< flags >*/ {
  CAREHARE_QUEUE_FLAGS_NONE        = 0,
  CAREHARE_QUEUE_FLAGS_PASSIVE     = 1 << 0,
  CAREHARE_QUEUE_FLAGS_DURABLE     = 1 << 1,
  CAREHARE_QUEUE_FLAGS_EXCLUSIVE   = 1 << 2,
  CAREHARE_QUEUE_FLAGS_AUTO_DELETE = 1 << 3,
} CarehareQueueFlags;

/**
 * CarehareQueueDeleteFlags:
 * @CAREHARE_QUEUE_DELETE_FLAGS_NONE: delete unconditionally.
 * @CAREHARE_QUEUE_DELETE_FLAGS_IF_UNUSED: fail with 406 PRECONDITION_FAILED
 *   if the queue has consumers.
 * @CAREHARE_QUEUE_DELETE_FLAGS_IF_EMPTY: fail with 406 PRECONDITION_FAILED
 *   if the queue holds messages.
 *
 * Flags for deleting a queue.
 */
typedef enum /*< flags >*/ {
  CAREHARE_QUEUE_DELETE_FLAGS_NONE      = 0,
  CAREHARE_QUEUE_DELETE_FLAGS_IF_UNUSED = 1 << 0,
  CAREHARE_QUEUE_DELETE_FLAGS_IF_EMPTY  = 1 << 1,
} CarehareQueueDeleteFlags;

/**
 * CarehareExchangeFlags:
 * @CAREHARE_EXCHANGE_FLAGS_NONE: no flags.
 * @CAREHARE_EXCHANGE_FLAGS_PASSIVE: only check that the exchange exists.
 * @CAREHARE_EXCHANGE_FLAGS_DURABLE: the exchange survives a broker restart.
 * @CAREHARE_EXCHANGE_FLAGS_AUTO_DELETE: the exchange is deleted when its
 *   last binding goes away.
 * @CAREHARE_EXCHANGE_FLAGS_INTERNAL: clients cannot publish to the exchange
 *   directly, only through exchange-to-exchange bindings.
 *
 * Flags for declaring an exchange.
 */
typedef enum /*< flags >*/ {
  CAREHARE_EXCHANGE_FLAGS_NONE        = 0,
  CAREHARE_EXCHANGE_FLAGS_PASSIVE     = 1 << 0,
  CAREHARE_EXCHANGE_FLAGS_DURABLE     = 1 << 1,
  CAREHARE_EXCHANGE_FLAGS_AUTO_DELETE = 1 << 2,
  CAREHARE_EXCHANGE_FLAGS_INTERNAL    = 1 << 3,
} CarehareExchangeFlags;

/**
 * CarehareExchangeDeleteFlags:
 * @CAREHARE_EXCHANGE_DELETE_FLAGS_NONE: delete unconditionally.
 * @CAREHARE_EXCHANGE_DELETE_FLAGS_IF_UNUSED: fail with 406
 *   PRECONDITION_FAILED if the exchange has bindings.
 *
 * Flags for deleting an exchange.
 */
typedef enum /*< flags >*/ {
  CAREHARE_EXCHANGE_DELETE_FLAGS_NONE      = 0,
  CAREHARE_EXCHANGE_DELETE_FLAGS_IF_UNUSED = 1 << 0,
} CarehareExchangeDeleteFlags;

/**
 * CareharePublishFlags:
 * @CAREHARE_PUBLISH_FLAGS_NONE: no flags.
 * @CAREHARE_PUBLISH_FLAGS_MANDATORY: fail with %CAREHARE_ERROR_UNROUTABLE
 *   when the message cannot be routed to any queue.
 *
 * Flags for publishing a message.
 */
typedef enum /*< flags >*/ {
  CAREHARE_PUBLISH_FLAGS_NONE      = 0,
  CAREHARE_PUBLISH_FLAGS_MANDATORY = 1 << 0,
} CareharePublishFlags;

/**
 * CarehareConsumeFlags:
 * @CAREHARE_CONSUME_FLAGS_NONE: no flags.
 * @CAREHARE_CONSUME_FLAGS_EXCLUSIVE: the only consumer of the queue: the
 *   start fails with %CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER 403
 *   ACCESS_REFUSED if the queue has another consumer, and another consumer
 *   that tries to start afterwards is refused the same way.
 *
 * Flags for [method@Carehare.Connection.acking_consumer_full_async].
 */
typedef enum /*< flags >*/ {
  CAREHARE_CONSUME_FLAGS_NONE      = 0,
  CAREHARE_CONSUME_FLAGS_EXCLUSIVE = 1 << 0,
} CarehareConsumeFlags;

G_END_DECLS
