/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol core (see carehare-protocol.c): the call channel, RPC over
 * RabbitMQ's direct reply-to. RabbitMQ delivers the replies to
 * amq.rabbitmq.reply-to only to a no-ack consumer on the channel that
 * published the request, so a connection has one call channel: a
 * Publisher (carehare-protocol-publish.c does its confirms and returns)
 * flagged as the call channel, opened on the first call with
 * Confirm.Select and Basic.Consume(amq.rabbitmq.reply-to, no_ack)
 * pipelined with Channel.Open, then the requests. Calls in flight are
 * matched to their replies by correlation id; a call completes once both
 * its request's ack and its reply have arrived, in either order. A reply
 * for no pending call (cancelled, failed, or another program's) is
 * dropped. When the server closes the channel, every call pending on it
 * fails, and the next call opens a new one.
 */

#include "carehare-protocol-private.h"

static Publisher *
caller_new (void)
{
  Publisher *pub = _carehare_protocol_publisher_new (NULL);

  pub->call = TRUE;
  pub->calls = g_hash_table_new (g_str_hash, g_str_equal);
  pub->abandoned = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  return pub;
}

static void
call_register (Publisher          *pub,
               CarehareProtocolOp *op)
{
  g_hash_table_insert (pub->calls, op->correlation_id, op);
  g_queue_push_tail_link (&pub->pending, &op->call_link);
}

static void
call_unregister (Publisher          *pub,
                 CarehareProtocolOp *op)
{
  g_hash_table_remove (pub->calls, op->correlation_id);
  g_queue_unlink (&pub->pending, &op->call_link);
}

/* Completes @op with @error (taken): a reply that came first is dropped. */
static void
call_fail (CarehareProtocol   *self,
           CarehareProtocolOp *op,
           GError             *error)
{
  g_clear_pointer (&op->delivery, carehare_protocol_delivery_free);
  _carehare_protocol_complete (self, op, NULL, error);
}

/* @op will complete before its request is settled (cancelled, or its
 * reply cannot be taken): forget it, so that its reply is dropped. A
 * written request whose confirm has yet to come leaves a stand-in in its
 * place, to take that confirm (and a return before it) silently. */
static void
call_detach (CarehareProtocol   *self,
             CarehareProtocolOp *op)
{
  Publisher *pub = op->publisher;
  CarehareProtocolOp *ghost;
  GList *link;

  call_unregister (pub, op);
  if (!op->written)
    {
      g_queue_remove (&pub->unwritten, op);
      return;
    }
  /* The request went out: its reply may still come. A fresh id is never
   * used again; one the caller chose stays taken until that reply, so
   * that it cannot complete a later call with the same id. */
  if (op->own_correlation_id && op->delivery == NULL)
    g_hash_table_add (pub->abandoned, g_strdup (op->correlation_id));
  g_clear_pointer (&op->delivery, carehare_protocol_delivery_free);
  if (op->confirmed)
    return;

  link = g_queue_find (&pub->unconfirmed, op);
  g_assert (link != NULL);
  ghost = _carehare_protocol_op_new (OP_CALL, NULL, NULL);
  ghost->cancelled = TRUE;
  ghost->publisher = pub;
  ghost->mandatory = op->mandatory;
  ghost->written = TRUE;
  ghost->seq = op->seq;
  ghost->body = g_steal_pointer (&op->body);
  ghost->header = g_steal_pointer (&op->header);
  ghost->routing_key = g_steal_pointer (&op->routing_key);
  ghost->exchange = g_steal_pointer (&op->exchange);
  ghost->returned = g_steal_pointer (&op->returned);
  link->data = ghost;
}

CarehareProtocolOp *
carehare_protocol_call (CarehareProtocol               *self,
                        const char                     *exchange,
                        const char                     *routing_key,
                        GBytes                         *body,
                        const CarehareBasicProperties  *properties,
                        gboolean                        mandatory,
                        CarehareProtocolOpCallback      callback,
                        gpointer                        user_data)
{
  CarehareBasicProperties props = { 0 };
  CarehareProtocolOp *op;
  Publisher *pub;

  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (exchange != NULL, NULL);
  g_return_val_if_fail (routing_key != NULL, NULL);
  g_return_val_if_fail (callback != NULL, NULL);

  _carehare_protocol_enter (self);
  op = _carehare_protocol_op_new (OP_CALL, callback, user_data);
  op->mandatory = mandatory;
  op->exchange = g_strdup (exchange);
  op->call_link.data = op;

  if (self->state != STATE_OPEN)
    {
      _carehare_protocol_complete (self, op, NULL,
                                   _carehare_protocol_closed_error_for (self->state == STATE_FINISHED
                                                                        ? self->finish_error : NULL));
      return _carehare_protocol_leave_with_op (self, op);
    }

  if (properties != NULL)
    props = *properties;
  if ((props.flags & CAREHARE_PROPERTY_CORRELATION_ID) && props.correlation_id != NULL &&
      *props.correlation_id != '\0')
    {
      op->correlation_id = g_strdup (props.correlation_id);
      op->own_correlation_id = TRUE;
    }
  else
    op->correlation_id = g_uuid_string_random ();

  pub = self->caller;
  if (pub != NULL && g_hash_table_contains (pub->calls, op->correlation_id))
    {
      /* Its reply could not be told from the other's. */
      _carehare_protocol_complete (self, op, NULL,
                                   g_error_new (G_IO_ERROR, G_IO_ERROR_EXISTS,
                                                "Cannot call: another pending call has "
                                                "correlation id '%s'", op->correlation_id));
      return _carehare_protocol_leave_with_op (self, op);
    }
  if (pub != NULL && g_hash_table_contains (pub->abandoned, op->correlation_id))
    {
      _carehare_protocol_complete (self, op, NULL,
                                   g_error_new (G_IO_ERROR, G_IO_ERROR_EXISTS,
                                                "Cannot call: a cancelled call with correlation "
                                                "id '%s' may still get its reply; use another "
                                                "id", op->correlation_id));
      return _carehare_protocol_leave_with_op (self, op);
    }

  props.flags |= CAREHARE_PROPERTY_CORRELATION_ID | CAREHARE_PROPERTY_REPLY_TO;
  props.correlation_id = op->correlation_id;
  props.reply_to = (char *) CAREHARE_PROTOCOL_DIRECT_REPLY_TO;

  switch (_carehare_protocol_publish_encode (self, pub, op, exchange, routing_key, body, &props))
    {
    case PUBLISH_FAILED:
      break;
    case PUBLISH_WRITTEN:
      call_register (pub, op);
      break;
    case PUBLISH_QUEUED:
      if (pub == NULL)
        {
          pub = self->caller = caller_new ();
          op->publisher = pub;
          call_register (pub, op);
          g_queue_push_tail (&pub->unwritten, op);
          /* May fail @op at once, for want of a channel. */
          _carehare_protocol_dispatch (self, &pub->open_op);
        }
      else
        {
          call_register (pub, op);
          g_queue_push_tail (&pub->unwritten, op);
          _carehare_protocol_publisher_flush (self, pub);
        }
      break;
    default:
      g_assert_not_reached ();
    }
  return _carehare_protocol_leave_with_op (self, op);
}

CarehareProtocolDelivery *
carehare_protocol_op_take_delivery (CarehareProtocolOp *op)
{
  g_return_val_if_fail (op != NULL, NULL);
  return g_steal_pointer (&op->delivery);
}

/* Pipelined after Channel.Open and Confirm.Select, before the requests:
 * the consumer of the replies. RabbitMQ allows it only without acks. */
void
_carehare_protocol_call_start (CarehareProtocol *self,
                               Publisher        *pub,
                               guint16           id)
{
  CarehareMethod consume = { .id = CAREHARE_METHOD_BASIC_CONSUME };

  g_clear_pointer (&pub->reply_tag, g_free);
  consume.basic_consume.queue = (char *) CAREHARE_PROTOCOL_DIRECT_REPLY_TO;
  consume.basic_consume.consumer_tag = (char *) "";
  consume.basic_consume.no_ack = TRUE;
  _carehare_protocol_append_method (self, id, &consume);
}

/* The call channel is over (the server closed it or cancelled its
 * consumer, or the connection went): every call pending on it fails with
 * a copy of @error (taken), and the next call opens a new one. */
void
_carehare_protocol_call_end (CarehareProtocol *self,
                             GError           *error)
{
  Publisher *pub = self->caller;
  CarehareProtocolOp *op;
  GList *link;

  if (pub == NULL)
    {
      g_error_free (error);
      return;
    }
  self->caller = NULL;

  /* Stand-ins go quietly; every real call is in pending. */
  while ((op = g_queue_pop_head (&pub->unconfirmed)) != NULL)
    if (op->cancelled)
      _carehare_protocol_op_free (op);
  g_queue_clear (&pub->unwritten);
  if (pub->waiting)
    {
      g_queue_remove (&self->waiting, &pub->open_op);
      pub->waiting = FALSE;
    }
  while ((link = g_queue_peek_head_link (&pub->pending)) != NULL)
    {
      op = link->data;
      call_unregister (pub, op);
      call_fail (self, op, g_error_copy (error));
    }
  g_error_free (error);
  _carehare_protocol_publisher_free (pub);
}

/* The request of @op was confirmed: @error is NULL for an ack, else the
 * nack or return (taken). The call completes once its reply is in too. */
void
_carehare_protocol_call_confirmed (CarehareProtocol   *self,
                                   CarehareProtocolOp *op,
                                   GError             *error)
{
  if (op->cancelled)
    {
      g_clear_error (&error);
      _carehare_protocol_op_free (op);
      return;
    }
  if (error != NULL)
    {
      call_unregister (op->publisher, op);
      call_fail (self, op, error);
      return;
    }
  op->confirmed = TRUE;
  if (op->delivery != NULL)
    {
      call_unregister (op->publisher, op);
      _carehare_protocol_complete (self, op, NULL, NULL);
    }
}

void
_carehare_protocol_call_cancel (CarehareProtocol   *self,
                                CarehareProtocolOp *op)
{
  call_detach (self, op);
}

/* A whole basic.deliver on the call channel: the reply of the call with
 * its correlation id, if one is pending. */
void
_carehare_protocol_call_content_done (CarehareProtocol *self,
                                      Content          *content)
{
  Publisher *pub = self->caller;
  const char *id = (content->props.flags & CAREHARE_PROPERTY_CORRELATION_ID)
                   ? content->props.correlation_id : NULL;
  CarehareProtocolOp *op = id != NULL ? g_hash_table_lookup (pub->calls, id) : NULL;

  if (op == NULL && id != NULL && g_hash_table_remove (pub->abandoned, id))
    {
      g_debug ("reply with correlation id '%s' on channel %u is a cancelled call's: dropped, "
               "and the id is free again", id, pub->channel);
      return;
    }
  if (op == NULL || op->delivery != NULL)
    {
      g_debug ("reply with correlation id '%s' on channel %u matches no pending call%s: "
               "dropped", id != NULL ? id : "(none)", pub->channel,
               content->bad != NULL ? " (and cannot be read)" : "");
      return;
    }
  if (content->bad != NULL)
    {
      call_detach (self, op);
      /* Its reply came: the id is free. */
      g_hash_table_remove (pub->abandoned, id);
      _carehare_protocol_complete (self, op, NULL,
                                   g_error_new (content->bad->domain, content->bad->code,
                                                "The reply cannot be taken: %s",
                                                content->bad->message));
      return;
    }

  op->delivery = _carehare_protocol_delivery_new_from_content (content);
  if (op->confirmed)
    {
      call_unregister (pub, op);
      _carehare_protocol_complete (self, op, NULL, NULL);
    }
}

void
_carehare_protocol_handle_call_method (CarehareProtocol *self,
                                       guint16           id,
                                       CarehareMethod   *method)
{
  Publisher *pub = self->caller;

  switch (method->id)
    {
    case CAREHARE_METHOD_BASIC_CONSUME_OK:
      if (pub->reply_tag != NULL)
        break;
      pub->reply_tag = g_strdup (method->basic_consume_ok.consumer_tag);
      return;

    case CAREHARE_METHOD_BASIC_DELIVER:
      if (pub->reply_tag == NULL ||
          g_strcmp0 (method->basic_deliver.consumer_tag, pub->reply_tag) != 0)
        {
          _carehare_protocol_fail_unexpected (self, 505, method->id,
                                              "basic.deliver on channel %u for consumer tag "
                                              "'%s', which is not a consumer there", id,
                                              method->basic_deliver.consumer_tag);
          return;
        }
      _carehare_protocol_content_begin (self, id, &pub->content, method);
      return;

    case CAREHARE_METHOD_BASIC_CANCEL:
      /* No reply can come any more: the calls fail, and the channel is
       * closed so that the next call opens a new one. */
      _carehare_protocol_call_end (self,
                                   g_error_new_literal (CAREHARE_ERROR,
                                                        CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER,
                                                        "The server cancelled the consumer of "
                                                        "replies (direct reply-to)"));
      self->channels[id].publisher = NULL;
      _carehare_protocol_discard_channel (self, id, "consumer of replies cancelled by server");
      return;

    default:
      _carehare_protocol_handle_publisher_method (self, id, pub, method);
      return;
    }
  _carehare_protocol_fail_unexpected (self, 505, method->id,
                                      "unexpected %s on the call channel %u",
                                      carehare_method_name (method->id), id);
}
