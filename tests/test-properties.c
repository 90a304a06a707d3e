/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <carehare-glib/carehare-glib.h>

#include "carehare-delivery-private.h"
#include "carehare-properties-private.h"

#include <string.h>

/* ---- helpers ------------------------------------------------------------- */

typedef struct {
  guint count;
  const char *last;   /* interned property name */
} NotifyCount;

static void
notify_cb (GObject    *object,
           GParamSpec *pspec,
           gpointer    user_data)
{
  NotifyCount *n = user_data;

  n->count++;
  n->last = g_param_spec_get_name (pspec);
}

typedef struct {
  const char *name;
  guint16 flag;
  const char *(*get) (CarehareProperties *);
  void (*set) (CarehareProperties *, const char *);
  gsize offset;   /* in CarehareBasicProperties */
} StringProp;

#define SP(n, NAME, fn, member) \
  { n, CAREHARE_PROPERTY_##NAME, carehare_properties_get_##fn, carehare_properties_set_##fn, \
    G_STRUCT_OFFSET (CarehareBasicProperties, member) }

static const StringProp string_props[] = {
  SP ("content-type", CONTENT_TYPE, content_type, content_type),
  SP ("content-encoding", CONTENT_ENCODING, content_encoding, content_encoding),
  SP ("correlation-id", CORRELATION_ID, correlation_id, correlation_id),
  SP ("reply-to", REPLY_TO, reply_to, reply_to),
  SP ("expiration", EXPIRATION, expiration, expiration),
  SP ("message-id", MESSAGE_ID, message_id, message_id),
  SP ("type", TYPE, message_type, type),
  SP ("user-id", USER_ID, user_id, user_id),
  SP ("app-id", APP_ID, app_id, app_id),
  SP ("cluster-id", CLUSTER_ID, cluster_id, cluster_id),
};

static const char *
basic_string (const CarehareBasicProperties *basic,
              const StringProp              *sp)
{
  return G_STRUCT_MEMBER (const char *, basic, sp->offset);
}

static GVariant *
nested_headers (void)
{
  return g_variant_new_parsed ("{'x-int': <int32 -7>, 'x-str': <'hé'>, "
                               "'x-bytes': <b'\\x00\\xff'>, 'x-bool': <true>, "
                               "'x-list': <[<int64 1>, <'two'>, <@a{sv} {}>]>, "
                               "'x-nested': <{'inner': <{'deeper': <uint16 9>}>}>}");
}

/* Every property set, each to a distinct value. */
static CarehareProperties *
full_properties (void)
{
  CarehareProperties *props = carehare_properties_new ();

  for (guint i = 0; i < G_N_ELEMENTS (string_props); i++)
    {
      g_autofree char *value = g_strdup_printf ("value of %s", string_props[i].name);
      string_props[i].set (props, value);
    }
  carehare_properties_set_headers (props, nested_headers ());
  carehare_properties_set_delivery_mode (props, 2);
  carehare_properties_set_priority (props, 0);   /* present, though 0 */
  carehare_properties_set_timestamp (props, 1700000000);
  return props;
}

static void
assert_properties_equal (CarehareProperties *a,
                         CarehareProperties *b)
{
  CarehareBasicProperties ba, bb;

  carehare_properties_to_basic (a, &ba);
  carehare_properties_to_basic (b, &bb);
  g_assert_cmphex (ba.flags, ==, bb.flags);
  for (guint i = 0; i < G_N_ELEMENTS (string_props); i++)
    g_assert_cmpstr (string_props[i].get (a), ==, string_props[i].get (b));
  g_assert_cmpuint (carehare_properties_get_delivery_mode (a), ==,
                    carehare_properties_get_delivery_mode (b));
  g_assert_cmpint (carehare_properties_get_priority (a), ==,
                   carehare_properties_get_priority (b));
  g_assert_cmpint (carehare_properties_get_timestamp (a), ==,
                   carehare_properties_get_timestamp (b));
  if (ba.headers == NULL || bb.headers == NULL)
    g_assert_true (ba.headers == bb.headers);
  else
    g_assert_true (g_variant_equal (ba.headers, bb.headers));
}

/* ---- CarehareProperties -------------------------------------------------- */

static void
test_properties_defaults (void)
{
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  CarehareBasicProperties basic;
  g_autoptr(GVariant) headers = NULL;
  guint delivery_mode = 99;
  int priority = 99;
  gint64 timestamp = 99;

  for (guint i = 0; i < G_N_ELEMENTS (string_props); i++)
    {
      g_autofree char *value = NULL;

      g_assert_null (string_props[i].get (props));
      g_object_get (props, string_props[i].name, &value, NULL);
      g_assert_null (value);
    }
  g_assert_null (carehare_properties_get_headers (props));
  g_assert_cmpuint (carehare_properties_get_delivery_mode (props), ==, 0);
  g_assert_cmpint (carehare_properties_get_priority (props), ==, -1);
  g_assert_cmpint (carehare_properties_get_timestamp (props), ==, -1);

  g_object_get (props, "headers", &headers, "delivery-mode", &delivery_mode,
                "priority", &priority, "timestamp", &timestamp, NULL);
  g_assert_null (headers);
  g_assert_cmpuint (delivery_mode, ==, 0);
  g_assert_cmpint (priority, ==, -1);
  g_assert_cmpint (timestamp, ==, -1);

  carehare_properties_to_basic (props, &basic);
  g_assert_cmphex (basic.flags, ==, 0);
}

static void
test_properties_strings (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (string_props); i++)
    {
      const StringProp *sp = &string_props[i];
      g_autoptr(CarehareProperties) props = carehare_properties_new ();
      NotifyCount n = { 0, NULL };
      g_autofree char *value = NULL;
      CarehareBasicProperties basic;
      char buf[32];

      g_test_message ("%s", sp->name);
      g_signal_connect (props, "notify", G_CALLBACK (notify_cb), &n);

      /* A value from a temporary buffer: the setter must copy it. */
      g_strlcpy (buf, "first", sizeof buf);
      sp->set (props, buf);
      memset (buf, 'X', sizeof buf - 1);
      g_assert_cmpstr (sp->get (props), ==, "first");
      g_assert_cmpuint (n.count, ==, 1);
      g_assert_cmpstr (n.last, ==, sp->name);

      carehare_properties_to_basic (props, &basic);
      g_assert_cmphex (basic.flags, ==, sp->flag);
      g_assert_cmpstr (basic_string (&basic, sp), ==, "first");

      /* The same value: no notification. */
      sp->set (props, "first");
      g_assert_cmpuint (n.count, ==, 1);

      /* Through GValue. */
      g_object_set (props, sp->name, "second", NULL);
      g_assert_cmpuint (n.count, ==, 2);
      g_object_get (props, sp->name, &value, NULL);
      g_assert_cmpstr (value, ==, "second");
      g_object_set (props, sp->name, "second", NULL);
      g_assert_cmpuint (n.count, ==, 2);

      /* The empty string is present, not absent. */
      sp->set (props, "");
      g_assert_cmpuint (n.count, ==, 3);
      g_assert_cmpstr (sp->get (props), ==, "");
      carehare_properties_to_basic (props, &basic);
      g_assert_cmphex (basic.flags, ==, sp->flag);

      sp->set (props, NULL);
      g_assert_cmpuint (n.count, ==, 4);
      g_assert_null (sp->get (props));
      carehare_properties_to_basic (props, &basic);
      g_assert_cmphex (basic.flags, ==, 0);
      g_assert_null (basic_string (&basic, sp));

      g_object_set (props, sp->name, NULL, NULL);
      g_assert_cmpuint (n.count, ==, 4);
      g_assert_cmpuint (g_signal_handlers_disconnect_by_data (props, &n), ==, 1);
    }
}

static void
test_properties_headers (void)
{
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  g_autoptr(GVariant) expected = g_variant_ref_sink (nested_headers ());
  g_autoptr(GVariant) empty = NULL;
  g_autoptr(GVariant) got = NULL;
  NotifyCount n = { 0, NULL };
  CarehareBasicProperties basic;
  GVariant *floating;

  g_signal_connect (props, "notify::headers", G_CALLBACK (notify_cb), &n);

  /* A floating value is sunk (and owned). */
  floating = nested_headers ();
  carehare_properties_set_headers (props, floating);
  g_assert_true (carehare_properties_get_headers (props) == floating);
  g_assert_false (g_variant_is_floating (floating));
  g_assert_true (g_variant_equal (carehare_properties_get_headers (props), expected));
  g_assert_cmpuint (n.count, ==, 1);
  carehare_properties_to_basic (props, &basic);
  g_assert_cmphex (basic.flags, ==, CAREHARE_PROPERTY_HEADERS);
  g_assert_true (basic.headers == floating);

  /* An equal value (another instance, floating or not): no notification,
   * nothing leaked. */
  carehare_properties_set_headers (props, nested_headers ());
  carehare_properties_set_headers (props, expected);
  g_assert_cmpuint (n.count, ==, 1);

  /* An empty table is present. */
  empty = g_variant_ref_sink (g_variant_new_parsed ("@a{sv} {}"));
  g_object_set (props, "headers", empty, NULL);
  g_assert_cmpuint (n.count, ==, 2);
  g_object_get (props, "headers", &got, NULL);
  g_assert_true (g_variant_equal (got, empty));
  carehare_properties_to_basic (props, &basic);
  g_assert_cmphex (basic.flags, ==, CAREHARE_PROPERTY_HEADERS);

  carehare_properties_set_headers (props, NULL);
  g_assert_cmpuint (n.count, ==, 3);
  g_assert_null (carehare_properties_get_headers (props));
  carehare_properties_to_basic (props, &basic);
  g_assert_cmphex (basic.flags, ==, 0);
  carehare_properties_set_headers (props, NULL);
  g_assert_cmpuint (n.count, ==, 3);
}

static void
test_properties_headers_wrong_type (void)
{
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  g_autoptr(GVariant) wrong = g_variant_ref_sink (g_variant_new_parsed ("{'a': 'b'}"));
  NotifyCount n = { 0, NULL };

  g_signal_connect (props, "notify", G_CALLBACK (notify_cb), &n);
  g_test_expect_message ("Carehare", G_LOG_LEVEL_CRITICAL, "*G_VARIANT_TYPE_VARDICT*");
  carehare_properties_set_headers (props, wrong);
  g_test_assert_expected_messages ();
  g_assert_null (carehare_properties_get_headers (props));
  g_assert_cmpuint (n.count, ==, 0);
}

static void
test_properties_delivery_mode (void)
{
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  NotifyCount n = { 0, NULL };
  CarehareBasicProperties basic;
  guint value = 0;

  g_signal_connect (props, "notify::delivery-mode", G_CALLBACK (notify_cb), &n);

  carehare_properties_set_delivery_mode (props, 0);
  g_assert_cmpuint (n.count, ==, 0);

  carehare_properties_set_delivery_mode (props, 1);
  g_assert_cmpuint (carehare_properties_get_delivery_mode (props), ==, 1);
  g_assert_cmpuint (n.count, ==, 1);
  carehare_properties_set_delivery_mode (props, 1);
  g_assert_cmpuint (n.count, ==, 1);

  g_object_set (props, "delivery-mode", 2, NULL);
  g_assert_cmpuint (n.count, ==, 2);
  g_object_get (props, "delivery-mode", &value, NULL);
  g_assert_cmpuint (value, ==, 2);
  carehare_properties_to_basic (props, &basic);
  g_assert_cmphex (basic.flags, ==, CAREHARE_PROPERTY_DELIVERY_MODE);
  g_assert_cmpuint (basic.delivery_mode, ==, 2);

  carehare_properties_set_delivery_mode (props, 0);
  g_assert_cmpuint (n.count, ==, 3);
  carehare_properties_to_basic (props, &basic);
  g_assert_cmphex (basic.flags, ==, 0);
}

static void
test_properties_priority (void)
{
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  NotifyCount n = { 0, NULL };
  CarehareBasicProperties basic;
  int value = 0;

  g_signal_connect (props, "notify::priority", G_CALLBACK (notify_cb), &n);

  carehare_properties_set_priority (props, -1);
  g_assert_cmpuint (n.count, ==, 0);

  /* 0 is a real priority, distinct from absent. */
  carehare_properties_set_priority (props, 0);
  g_assert_cmpint (carehare_properties_get_priority (props), ==, 0);
  g_assert_cmpuint (n.count, ==, 1);
  carehare_properties_to_basic (props, &basic);
  g_assert_cmphex (basic.flags, ==, CAREHARE_PROPERTY_PRIORITY);
  carehare_properties_set_priority (props, 0);
  g_assert_cmpuint (n.count, ==, 1);

  g_object_set (props, "priority", 255, NULL);
  g_assert_cmpuint (n.count, ==, 2);
  g_object_get (props, "priority", &value, NULL);
  g_assert_cmpint (value, ==, 255);
  g_object_set (props, "priority", 255, NULL);
  g_assert_cmpuint (n.count, ==, 2);

  g_object_set (props, "priority", -1, NULL);
  g_assert_cmpuint (n.count, ==, 3);
  g_assert_cmpint (carehare_properties_get_priority (props), ==, -1);
  carehare_properties_to_basic (props, &basic);
  g_assert_cmphex (basic.flags, ==, 0);
}

static void
test_properties_timestamp (void)
{
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  NotifyCount n = { 0, NULL };
  CarehareBasicProperties basic;
  gint64 value = 0;

  g_signal_connect (props, "notify::timestamp", G_CALLBACK (notify_cb), &n);

  carehare_properties_set_timestamp (props, -1);
  g_assert_cmpuint (n.count, ==, 0);

  carehare_properties_set_timestamp (props, 0);  /* the epoch: present */
  g_assert_cmpint (carehare_properties_get_timestamp (props), ==, 0);
  g_assert_cmpuint (n.count, ==, 1);
  carehare_properties_set_timestamp (props, 0);
  g_assert_cmpuint (n.count, ==, 1);

  g_object_set (props, "timestamp", G_GINT64_CONSTANT (1700000000), NULL);
  g_assert_cmpuint (n.count, ==, 2);
  g_object_get (props, "timestamp", &value, NULL);
  g_assert_cmpint (value, ==, 1700000000);
  carehare_properties_to_basic (props, &basic);
  g_assert_cmphex (basic.flags, ==, CAREHARE_PROPERTY_TIMESTAMP);
  g_assert_cmpuint (basic.timestamp, ==, 1700000000);

  carehare_properties_set_timestamp (props, -1);
  g_assert_cmpuint (n.count, ==, 3);
  g_assert_cmpint (carehare_properties_get_timestamp (props), ==, -1);
}

static void
test_properties_timestamp_clamped (void)
{
  CarehareBasicProperties basic = { 0 };
  g_autoptr(CarehareProperties) props = NULL;
  CarehareBasicProperties back;

  basic.flags = CAREHARE_PROPERTY_TIMESTAMP;
  basic.timestamp = G_MAXUINT64;
  props = carehare_properties_new_take_basic (&basic);
  g_assert_cmpint (carehare_properties_get_timestamp (props), ==, G_MAXINT64);
  /* Reading does not change what is sent on. */
  carehare_properties_to_basic (props, &back);
  g_assert_cmpuint (back.timestamp, ==, G_MAXUINT64);
}

static void
test_properties_round_trip_all (void)
{
  g_autoptr(CarehareProperties) props = full_properties ();
  g_autoptr(CarehareProperties) back = NULL;
  g_autoptr(GVariant) expected = g_variant_ref_sink (nested_headers ());
  CarehareBasicProperties basic, owned, again;

  carehare_properties_to_basic (props, &basic);
  g_assert_cmphex (basic.flags, ==, CAREHARE_PROPERTY_ALL);
  g_assert_cmpuint (basic.delivery_mode, ==, 2);
  g_assert_cmpuint (basic.priority, ==, 0);
  g_assert_cmpuint (basic.timestamp, ==, 1700000000);
  g_assert_true (g_variant_equal (basic.headers, expected));
  for (guint i = 0; i < G_N_ELEMENTS (string_props); i++)
    {
      g_autofree char *value = g_strdup_printf ("value of %s", string_props[i].name);
      /* Borrowed: the very pointer the object holds. */
      g_assert_true (basic_string (&basic, &string_props[i]) == string_props[i].get (props));
      g_assert_cmpstr (basic_string (&basic, &string_props[i]), ==, value);
    }

  /* As the decoder would hand it over: owned copies. */
  owned = basic;
  for (guint i = 0; i < G_N_ELEMENTS (string_props); i++)
    G_STRUCT_MEMBER (char *, &owned, string_props[i].offset) =
      g_strdup (basic_string (&basic, &string_props[i]));
  owned.headers = g_variant_ref (basic.headers);

  back = carehare_properties_new_take_basic (&owned);
  g_assert_cmphex (owned.flags, ==, 0);
  g_assert_null (owned.headers);
  g_assert_null (owned.content_type);
  assert_properties_equal (props, back);
  g_assert_true (g_variant_equal (carehare_properties_get_headers (back), expected));

  carehare_properties_to_basic (back, &again);
  g_assert_cmphex (again.flags, ==, CAREHARE_PROPERTY_ALL);
}

static void
test_properties_round_trip_none (void)
{
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  g_autoptr(CarehareProperties) back = NULL;
  CarehareBasicProperties basic, zero = { 0 };

  carehare_properties_to_basic (props, &basic);
  g_assert_cmpmem (&basic, sizeof basic, &zero, sizeof zero);

  /* NULL properties: no properties. */
  memset (&basic, 0xAA, sizeof basic);
  carehare_properties_to_basic (NULL, &basic);
  g_assert_cmpmem (&basic, sizeof basic, &zero, sizeof zero);

  back = carehare_properties_new_take_basic (&basic);
  assert_properties_equal (props, back);
}

static void
test_properties_round_trip_each (void)
{
  /* Each property alone: its flag and nothing else. */
  for (guint bit = 2; bit < 16; bit++)
    {
      guint16 flag = 1u << bit;
      g_autoptr(CarehareProperties) full = full_properties ();
      g_autoptr(CarehareProperties) one = NULL;
      g_autoptr(CarehareProperties) back = NULL;
      CarehareBasicProperties basic, owned = { 0 };

      carehare_properties_to_basic (full, &basic);
      owned.flags = flag;
      owned.delivery_mode = flag == CAREHARE_PROPERTY_DELIVERY_MODE ? basic.delivery_mode : 0;
      owned.priority = flag == CAREHARE_PROPERTY_PRIORITY ? basic.priority : 0;
      owned.timestamp = flag == CAREHARE_PROPERTY_TIMESTAMP ? basic.timestamp : 0;
      if (flag == CAREHARE_PROPERTY_HEADERS)
        owned.headers = g_variant_ref (basic.headers);
      for (guint i = 0; i < G_N_ELEMENTS (string_props); i++)
        if (string_props[i].flag == flag)
          G_STRUCT_MEMBER (char *, &owned, string_props[i].offset) =
            g_strdup (basic_string (&basic, &string_props[i]));

      one = carehare_properties_new_take_basic (&owned);
      carehare_properties_to_basic (one, &basic);
      g_assert_cmphex (basic.flags, ==, flag);

      back = carehare_properties_copy (one);
      assert_properties_equal (one, back);
    }
}

static void
test_properties_take_basic_normalises (void)
{
  CarehareBasicProperties basic = { 0 };
  g_autoptr(CarehareProperties) props = NULL;
  CarehareBasicProperties back;

  /* Flagged but NULL: sent as "" and an empty table, so read that way. */
  basic.flags = CAREHARE_PROPERTY_CONTENT_TYPE | CAREHARE_PROPERTY_HEADERS;
  /* Not flagged but set: absent (and freed). */
  basic.app_id = g_strdup ("stray");
  basic.priority = 5;
  props = carehare_properties_new_take_basic (&basic);

  g_assert_cmpstr (carehare_properties_get_content_type (props), ==, "");
  g_assert_nonnull (carehare_properties_get_headers (props));
  g_assert_cmpuint (g_variant_n_children (carehare_properties_get_headers (props)), ==, 0);
  g_assert_null (carehare_properties_get_app_id (props));
  g_assert_cmpint (carehare_properties_get_priority (props), ==, -1);
  carehare_properties_to_basic (props, &back);
  g_assert_cmphex (back.flags, ==, CAREHARE_PROPERTY_CONTENT_TYPE | CAREHARE_PROPERTY_HEADERS);
}

static void
test_properties_copy (void)
{
  g_autoptr(CarehareProperties) props = full_properties ();
  g_autoptr(CarehareProperties) copy = carehare_properties_copy (props);
  g_autoptr(CarehareProperties) empty = carehare_properties_new ();
  g_autoptr(CarehareProperties) empty_copy = carehare_properties_copy (empty);

  g_assert_true (copy != props);
  assert_properties_equal (props, copy);
  assert_properties_equal (empty, empty_copy);

  /* Deep: the strings are the copy's own. */
  g_assert_true (carehare_properties_get_content_type (copy) !=
                 carehare_properties_get_content_type (props));

  carehare_properties_set_content_type (copy, "text/plain");
  carehare_properties_set_headers (copy, NULL);
  carehare_properties_set_priority (copy, 9);
  g_assert_cmpstr (carehare_properties_get_content_type (props), ==, "value of content-type");
  g_assert_nonnull (carehare_properties_get_headers (props));
  g_assert_cmpint (carehare_properties_get_priority (props), ==, 0);

  /* Freeing the original leaves the copy intact. */
  g_clear_object (&props);
  g_assert_cmpstr (carehare_properties_get_message_id (copy), ==, "value of message-id");
}

static void
test_properties_type_is_gtype_safe (void)
{
  /* The "type" property's C accessors are get/set_message_type, since
   * carehare_properties_get_type() is the GType. */
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  g_autofree char *value = NULL;

  g_assert_true (g_type_is_a (carehare_properties_get_type (), G_TYPE_OBJECT));
  carehare_properties_set_message_type (props, "order.created");
  g_object_get (props, "type", &value, NULL);
  g_assert_cmpstr (value, ==, "order.created");
}

/* ---- CarehareDelivery ---------------------------------------------------- */

static CarehareDelivery *
new_delivery (GBytes *body,
              CarehareBasicProperties *props)
{
  return carehare_delivery_new (g_bytes_ref (body), props, G_GUINT64_CONSTANT (1) << 40,
                                g_strdup ("amq.topic"), g_strdup ("a.b.c"), TRUE,
                                g_strdup ("amq.ctag-xyz"));
}

static void
test_delivery_getters (void)
{
  g_autoptr(GBytes) body = g_bytes_new ("hello", 5);
  g_autoptr(CarehareProperties) source = full_properties ();
  g_autoptr(CarehareDelivery) delivery = NULL;
  CarehareBasicProperties basic, owned;
  CarehareProperties *props;

  carehare_properties_to_basic (source, &basic);
  owned = basic;
  for (guint i = 0; i < G_N_ELEMENTS (string_props); i++)
    G_STRUCT_MEMBER (char *, &owned, string_props[i].offset) =
      g_strdup (basic_string (&basic, &string_props[i]));
  owned.headers = g_variant_ref (basic.headers);

  delivery = new_delivery (body, &owned);
  g_assert_cmphex (owned.flags, ==, 0);
  g_assert_null (owned.headers);

  g_assert_true (carehare_delivery_get_body (delivery) == body);  /* not copied */
  g_assert_cmpuint (carehare_delivery_get_delivery_tag (delivery), ==, G_GUINT64_CONSTANT (1) << 40);
  g_assert_cmpstr (carehare_delivery_get_exchange (delivery), ==, "amq.topic");
  g_assert_cmpstr (carehare_delivery_get_routing_key (delivery), ==, "a.b.c");
  g_assert_true (carehare_delivery_get_redelivered (delivery));
  g_assert_cmpstr (carehare_delivery_get_consumer_tag (delivery), ==, "amq.ctag-xyz");

  props = carehare_delivery_get_properties (delivery);
  g_assert_true (CAREHARE_IS_PROPERTIES (props));
  g_assert_true (carehare_delivery_get_properties (delivery) == props);  /* lazy, once */
  assert_properties_equal (source, props);
}

static void
test_delivery_gvalue (void)
{
  g_autoptr(GBytes) body = g_bytes_new_static ("", 0);
  g_autoptr(CarehareDelivery) delivery = new_delivery (body, NULL);
  g_autoptr(GBytes) got_body = NULL;
  g_autoptr(CarehareProperties) got_props = NULL;
  g_autofree char *exchange = NULL, *routing_key = NULL, *consumer_tag = NULL;
  guint64 tag = 0;
  gboolean redelivered = FALSE;
  CarehareBasicProperties basic;

  g_object_get (delivery,
                "body", &got_body,
                "properties", &got_props,
                "delivery-tag", &tag,
                "exchange", &exchange,
                "routing-key", &routing_key,
                "redelivered", &redelivered,
                "consumer-tag", &consumer_tag,
                NULL);
  g_assert_true (got_body == body);
  g_assert_true (got_props == carehare_delivery_get_properties (delivery));
  carehare_properties_to_basic (got_props, &basic);
  g_assert_cmphex (basic.flags, ==, 0);
  g_assert_cmpuint (tag, ==, G_GUINT64_CONSTANT (1) << 40);
  g_assert_cmpstr (exchange, ==, "amq.topic");
  g_assert_cmpstr (routing_key, ==, "a.b.c");
  g_assert_true (redelivered);
  g_assert_cmpstr (consumer_tag, ==, "amq.ctag-xyz");

  /* Read-only. */
  g_assert_false (g_object_class_find_property (G_OBJECT_GET_CLASS (delivery), "body")->flags & G_PARAM_WRITABLE);
}

static void
test_delivery_finalize (void)
{
  GBytes *body = g_bytes_new ("payload", 7);
  CarehareDelivery *delivery;
  CarehareBasicProperties owned = { 0 };
  CarehareProperties *props;

  /* Never asked for its properties: the stored members are freed. */
  owned.flags = CAREHARE_PROPERTY_HEADERS | CAREHARE_PROPERTY_REPLY_TO;
  owned.headers = g_variant_ref_sink (nested_headers ());
  owned.reply_to = g_strdup ("replies");
  delivery = new_delivery (body, &owned);
  g_object_add_weak_pointer (G_OBJECT (delivery), (gpointer *) &delivery);
  g_object_unref (delivery);
  g_assert_null (delivery);

  /* Asked: the object holds them and dies with the delivery, unless kept. */
  owned.flags = CAREHARE_PROPERTY_HEADERS | CAREHARE_PROPERTY_REPLY_TO;
  owned.headers = g_variant_ref_sink (nested_headers ());
  owned.reply_to = g_strdup ("replies");
  delivery = new_delivery (body, &owned);
  props = g_object_ref (carehare_delivery_get_properties (delivery));
  g_object_add_weak_pointer (G_OBJECT (delivery), (gpointer *) &delivery);
  g_object_unref (delivery);
  g_assert_null (delivery);
  g_assert_cmpstr (carehare_properties_get_reply_to (props), ==, "replies");
  g_object_add_weak_pointer (G_OBJECT (props), (gpointer *) &props);
  g_object_unref (props);
  g_assert_null (props);

  /* The body outlives the delivery through its own reference. */
  g_assert_cmpuint (g_bytes_get_size (body), ==, 7);
  g_bytes_unref (body);
}

static gpointer
get_properties_thread (gpointer data)
{
  return carehare_delivery_get_properties (data);
}

static void
test_delivery_properties_threads (void)
{
  g_autoptr(GBytes) body = g_bytes_new_static ("x", 1);

  for (guint round = 0; round < 50; round++)
    {
      CarehareBasicProperties owned = { 0 };
      g_autoptr(CarehareDelivery) delivery = NULL;
      GThread *threads[4];
      gpointer first = NULL;

      owned.flags = CAREHARE_PROPERTY_MESSAGE_ID;
      owned.message_id = g_strdup ("m");
      delivery = new_delivery (body, &owned);
      for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
        threads[i] = g_thread_new ("get-properties", get_properties_thread, delivery);
      for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
        {
          gpointer got = g_thread_join (threads[i]);

          if (first == NULL)
            first = got;
          g_assert_true (got == first);
        }
      g_assert_cmpstr (carehare_properties_get_message_id (first), ==, "m");
    }
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/properties/defaults", test_properties_defaults);
  g_test_add_func ("/properties/strings", test_properties_strings);
  g_test_add_func ("/properties/headers", test_properties_headers);
  g_test_add_func ("/properties/headers/wrong-type", test_properties_headers_wrong_type);
  g_test_add_func ("/properties/delivery-mode", test_properties_delivery_mode);
  g_test_add_func ("/properties/priority", test_properties_priority);
  g_test_add_func ("/properties/timestamp", test_properties_timestamp);
  g_test_add_func ("/properties/timestamp/clamped", test_properties_timestamp_clamped);
  g_test_add_func ("/properties/basic/round-trip/all", test_properties_round_trip_all);
  g_test_add_func ("/properties/basic/round-trip/none", test_properties_round_trip_none);
  g_test_add_func ("/properties/basic/round-trip/each", test_properties_round_trip_each);
  g_test_add_func ("/properties/basic/normalises", test_properties_take_basic_normalises);
  g_test_add_func ("/properties/copy", test_properties_copy);
  g_test_add_func ("/properties/type", test_properties_type_is_gtype_safe);
  g_test_add_func ("/delivery/getters", test_delivery_getters);
  g_test_add_func ("/delivery/gvalue", test_delivery_gvalue);
  g_test_add_func ("/delivery/finalize", test_delivery_finalize);
  g_test_add_func ("/delivery/properties/threads", test_delivery_properties_threads);

  return g_test_run ();
}
