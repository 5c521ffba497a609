//! Property tests of the codec as a whole:
//!
//! - every valid packet of every version survives `encode` then `decode`,
//!   and `encoded_len` is exactly what `encode` writes;
//! - arbitrary and mutated bytes never make the decoder panic, and whatever
//!   it accepts re-encodes to the bytes it consumed (or, for the few
//!   non-canonical forms the specification allows, to an equivalent packet);
//! - a stream of packets cut at arbitrary points decodes to the same packets.
//!
//! The strategies build only packets the specification allows, for the
//! version they are encoded with: under 3.1 and 3.1.1 everything 5.0 added
//! (properties, reason codes, subscription options) keeps its default,
//! because it is not on the wire and so cannot come back.

#![allow(clippy::unwrap_used)]

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Ack, AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, DecodeLimits, Disconnect, DisconnectProperties, MqttString, Packet,
    PayloadFormat, ProtocolVersion, Publish, PublishExtras, PublishProperties, QoS, ReasonCode,
    RetainHandling, SubAck, Subscribe, SubscribeProperties, Subscription, SubscriptionId,
    SubscriptionOptions, UnsubAck, Unsubscribe, UnsubscribeProperties, UserProperty, Will,
    WillProperties,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::strategy::Union;

use ProtocolVersion::{V3_1, V3_1_1, V5};
use ReasonCode::*;

const VERSIONS: [ProtocolVersion; 3] = [V3_1, V3_1_1, V5];

// The reason codes each packet may carry (MQTT 5.0 §2.4 and each packet's
// section), written out again here so the tests do not trust the decoder's
// own tables.

const CONNACK_CODES: &[ReasonCode] = &[
    Success,
    UnspecifiedError,
    MalformedPacket,
    ProtocolError,
    ImplementationSpecificError,
    UnsupportedProtocolVersion,
    ClientIdentifierNotValid,
    BadUserNameOrPassword,
    NotAuthorized,
    ServerUnavailable,
    ServerBusy,
    Banned,
    BadAuthenticationMethod,
    TopicNameInvalid,
    PacketTooLarge,
    QuotaExceeded,
    PayloadFormatInvalid,
    RetainNotSupported,
    QoSNotSupported,
    UseAnotherServer,
    ServerMoved,
    ConnectionRateExceeded,
];

/// The 3.1.1 CONNACK return codes 0–5 (§3.2.2.3): the reason codes that map
/// to one of them and back to themselves.
const CONNACK_V3_CODES: &[ReasonCode] = &[
    Success,
    UnsupportedProtocolVersion,
    ClientIdentifierNotValid,
    ServerUnavailable,
    BadUserNameOrPassword,
    NotAuthorized,
];

/// PUBACK and PUBREC (§3.4.2.1, §3.5.2.1).
const PUBACK_CODES: &[ReasonCode] = &[
    Success,
    NoMatchingSubscribers,
    UnspecifiedError,
    ImplementationSpecificError,
    NotAuthorized,
    TopicNameInvalid,
    PacketIdentifierInUse,
    QuotaExceeded,
    PayloadFormatInvalid,
];

/// PUBREL and PUBCOMP (§3.6.2.1, §3.7.2.1).
const PUBREL_CODES: &[ReasonCode] = &[Success, PacketIdentifierNotFound];

const SUBACK_CODES: &[ReasonCode] = &[
    Success,
    GrantedQoS1,
    GrantedQoS2,
    UnspecifiedError,
    ImplementationSpecificError,
    NotAuthorized,
    TopicFilterInvalid,
    PacketIdentifierInUse,
    QuotaExceeded,
    SharedSubscriptionsNotSupported,
    SubscriptionIdentifiersNotSupported,
    WildcardSubscriptionsNotSupported,
];

/// The 3.1.1 SUBACK return codes 0x00, 0x01, 0x02 and 0x80 (§3.9.3).
const SUBACK_V3_CODES: &[ReasonCode] = &[Success, GrantedQoS1, GrantedQoS2, UnspecifiedError];

const UNSUBACK_CODES: &[ReasonCode] = &[
    Success,
    NoSubscriptionExisted,
    UnspecifiedError,
    ImplementationSpecificError,
    NotAuthorized,
    TopicFilterInvalid,
    PacketIdentifierInUse,
];

const DISCONNECT_CODES: &[ReasonCode] = &[
    Success,
    DisconnectWithWillMessage,
    UnspecifiedError,
    MalformedPacket,
    ProtocolError,
    ImplementationSpecificError,
    NotAuthorized,
    ServerBusy,
    ServerShuttingDown,
    KeepAliveTimeout,
    SessionTakenOver,
    TopicFilterInvalid,
    TopicNameInvalid,
    ReceiveMaximumExceeded,
    TopicAliasInvalid,
    PacketTooLarge,
    MessageRateTooHigh,
    QuotaExceeded,
    AdministrativeAction,
    PayloadFormatInvalid,
    RetainNotSupported,
    QoSNotSupported,
    UseAnotherServer,
    ServerMoved,
    SharedSubscriptionsNotSupported,
    ConnectionRateExceeded,
    MaximumConnectTime,
    SubscriptionIdentifiersNotSupported,
    WildcardSubscriptionsNotSupported,
];

const AUTH_CODES: &[ReasonCode] = &[Success, ContinueAuthentication, ReAuthenticate];

// ---------------------------------------------------------------------------
// Strategies for the pieces of a packet.
// ---------------------------------------------------------------------------

fn any_version() -> impl Strategy<Value = ProtocolVersion> {
    select(&VERSIONS[..])
}

/// Characters that make strings interesting: separators, wildcards, 2-, 3-
/// and 4-byte UTF-8, and the highest code point.
const SPECIAL_CHARS: &str = "az0/ +#$éß€中😀\u{7f}\u{1}\u{ffff}\u{10ffff}";

/// Any character MQTT allows in a string: everything but U+0000
/// [MQTT-1.5.4-2]. (`char` already excludes the surrogates of [MQTT-1.5.4-1].)
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => select(SPECIAL_CHARS.chars().collect::<Vec<_>>()),
        1 => any::<char>().prop_map(|c| if c == '\0' { '\u{1}' } else { c }),
    ]
}

/// A valid MQTT string of `min..max` characters.
fn string_of(
    chars: impl Strategy<Value = char>,
    min: usize,
    max: usize,
) -> impl Strategy<Value = MqttString> {
    vec(chars, min..max)
        .prop_map(|cs| MqttString::try_from(cs.into_iter().collect::<String>()).unwrap())
}

/// Any valid MQTT string, possibly empty.
fn any_string() -> impl Strategy<Value = MqttString> {
    string_of(any_char(), 0, 24)
}

/// A topic name: no wildcards [MQTT-3.3.2-2] and at least `min` characters.
fn topic_name(min: usize) -> impl Strategy<Value = MqttString> {
    let chars = any_char().prop_map(|c| if c == '+' || c == '#' { '/' } else { c });
    string_of(chars, min, 24)
}

/// A topic filter as SUBSCRIBE and UNSUBSCRIBE carry it: the codec leaves
/// checking the filter to the receiver, so any string goes.
fn topic_filter() -> impl Strategy<Value = MqttString> {
    any_string()
}

/// Binary data for properties and passwords.
fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..40).prop_map(Bytes::from)
}

/// An application payload: usually small, sometimes large enough for a
/// remaining length of three bytes.
fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        20 => vec(any::<u8>(), 0..300),
        1 => vec(any::<u8>(), 300..20_000),
    ]
    .prop_map(Bytes::from)
}

fn any_qos() -> impl Strategy<Value = QoS> {
    select(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][..])
}

fn packet_id() -> impl Strategy<Value = NonZeroU16> {
    any::<NonZeroU16>()
}

fn reason(codes: &'static [ReasonCode]) -> impl Strategy<Value = ReasonCode> {
    select(codes)
}

fn user_properties() -> impl Strategy<Value = Vec<UserProperty>> {
    vec(
        (any_string(), any_string()).prop_map(|(name, value)| UserProperty::new(name, value)),
        0..4,
    )
}

fn payload_format() -> impl Strategy<Value = PayloadFormat> {
    select(&[PayloadFormat::Unspecified, PayloadFormat::Utf8][..])
}

fn subscription_id() -> impl Strategy<Value = SubscriptionId> {
    prop_oneof![1u32..200, 1..=SubscriptionId::MAX].prop_map(|v| SubscriptionId::new(v).unwrap())
}

/// `Some(strategy)` under 5.0, the default under 3.x: properties and other
/// 5.0 fields are not on a 3.x wire, so only their default comes back.
fn v5_or_default<S>(version: ProtocolVersion, s: S) -> BoxedStrategy<S::Value>
where
    S: Strategy + 'static,
    S::Value: Default + Clone + std::fmt::Debug,
{
    if version.is_v5() {
        s.boxed()
    } else {
        Just(S::Value::default()).boxed()
    }
}

// ---------------------------------------------------------------------------
// Properties: every field set or not.
// ---------------------------------------------------------------------------

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(any::<NonZeroU16>()),
        option::of(any::<NonZeroU32>()),
        option::of(any::<u16>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any_string()),
        option::of(binary()),
        user_properties(),
    )
        .prop_map(
            |(sei, rm, mps, tam, rri, rpi, am, ad, user)| ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                authentication_method: am,
                authentication_data: ad,
                user_properties: user.into(),
            },
        )
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        option::of(any::<u32>()),
        option::of(payload_format()),
        option::of(any::<u32>()),
        option::of(any_string()),
        option::of(topic_name(1)),
        option::of(binary()),
        user_properties(),
    )
        .prop_map(|(wdi, pfi, mei, ct, rt, cd, user)| WillProperties {
            will_delay_interval: wdi,
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: user.into(),
        })
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    (
        (
            option::of(any::<u32>()),
            option::of(any::<NonZeroU16>()),
            // Maximum QoS is 0 or 1; 2 is said by leaving it out (§3.2.2.3.4).
            option::of(select(&[QoS::AtMostOnce, QoS::AtLeastOnce][..])),
            option::of(any::<bool>()),
            option::of(any::<NonZeroU32>()),
            option::of(any_string()),
            option::of(any::<u16>()),
            option::of(any_string()),
        ),
        (
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any::<u16>()),
            option::of(any_string()),
            option::of(any_string()),
            option::of(any_string()),
            option::of(binary()),
        ),
        user_properties(),
    )
        .prop_map(
            |((sei, rm, mq, ra, mps, aci, tam, rs), (wsa, sia, ssa, ska, ri, sr, am, ad), user)| {
                ConnAckProperties {
                    session_expiry_interval: sei,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mps,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    wildcard_subscription_available: wsa,
                    subscription_identifier_available: sia,
                    shared_subscription_available: ssa,
                    server_keep_alive: ska,
                    response_information: ri,
                    server_reference: sr,
                    authentication_method: am,
                    authentication_data: ad,
                    user_properties: user.into(),
                }
            },
        )
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        option::of(payload_format()),
        option::of(any::<u32>()),
        option::of(any::<NonZeroU16>()),
        option::of(topic_name(1)),
        option::of(binary()),
        vec(subscription_id(), 0..4),
        option::of(any_string()),
        user_properties(),
    )
        .prop_map(|(pfi, mei, ta, rt, cd, sids, ct, user)| PublishProperties {
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            topic_alias: ta,
            subscription_identifiers: sids.into_iter().collect(),
            extras: PublishExtras {
                response_topic: rt,
                correlation_data: cd,
                content_type: ct,
                user_properties: user.into(),
            }
            .shared(),
        })
}

fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (option::of(any_string()), user_properties()).prop_map(|(rs, user)| AckProperties {
        reason_string: rs,
        user_properties: user.into(),
    })
}

fn subscribe_properties() -> impl Strategy<Value = SubscribeProperties> {
    (option::of(subscription_id()), user_properties()).prop_map(|(sid, user)| SubscribeProperties {
        subscription_identifier: sid,
        user_properties: user.into(),
    })
}

fn unsubscribe_properties() -> impl Strategy<Value = UnsubscribeProperties> {
    user_properties().prop_map(|user| UnsubscribeProperties {
        user_properties: user.into(),
    })
}

fn disconnect_properties() -> impl Strategy<Value = DisconnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(any_string()),
        option::of(any_string()),
        user_properties(),
    )
        .prop_map(|(sei, rs, sr, user)| DisconnectProperties {
            session_expiry_interval: sei,
            reason_string: rs,
            server_reference: sr,
            user_properties: user.into(),
        })
}

fn auth_properties() -> impl Strategy<Value = AuthProperties> {
    (
        option::of(any_string()),
        option::of(binary()),
        option::of(any_string()),
        user_properties(),
    )
        .prop_map(|(am, ad, rs, user)| AuthProperties {
            authentication_method: am,
            authentication_data: ad,
            reason_string: rs,
            user_properties: user.into(),
        })
}

// ---------------------------------------------------------------------------
// Packets.
// ---------------------------------------------------------------------------

fn will(version: ProtocolVersion) -> impl Strategy<Value = Will> {
    (
        // A will topic is a topic name and may not be empty: there is no
        // alias to stand for it.
        topic_name(1),
        payload(),
        any_qos(),
        any::<bool>(),
        v5_or_default(version, will_properties()),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

/// A CONNECT of any version: it carries its own version, whatever the
/// connection's.
fn connect() -> impl Strategy<Value = Connect> {
    any_version().prop_flat_map(|protocol| {
        (
            any::<bool>(),
            any::<u16>(),
            v5_or_default(protocol, connect_properties()),
            any_string(),
            option::of(will(protocol)),
            option::of(any_string()),
            option::of(binary()),
            any::<bool>(),
        )
            .prop_map(
                move |(
                    clean_start,
                    keep_alive,
                    properties,
                    client_id,
                    will,
                    username,
                    password,
                    bridge,
                )| {
                    // 3.1.1 has no password without a user name [MQTT-3.1.2-22].
                    let password = if protocol.is_v5() || username.is_some() {
                        password
                    } else {
                        None
                    };
                    Connect {
                        protocol,
                        clean_start,
                        keep_alive,
                        properties,
                        client_id,
                        will,
                        username,
                        password,
                        bridge,
                    }
                },
            )
    })
}

fn connack(version: ProtocolVersion) -> impl Strategy<Value = ConnAck> {
    let codes = if version.is_v5() {
        CONNACK_CODES
    } else {
        CONNACK_V3_CODES
    };
    (
        reason(codes),
        any::<bool>(),
        v5_or_default(version, connack_properties()),
    )
        .prop_map(|(reason_code, session_present, properties)| ConnAck {
            // Session present is 0 with any failure [MQTT-3.2.2-6].
            session_present: session_present && !reason_code.is_error(),
            reason_code,
            properties,
        })
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Publish> {
    (
        any_qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(0),
        packet_id(),
        v5_or_default(version, publish_properties()),
        payload(),
        any::<bool>(),
    )
        .prop_map(
            move |(qos, dup, retain, topic, id, mut properties, payload, alias)| {
                let has_id = qos != QoS::AtMostOnce;
                // The topic may be empty only where an alias stands for it
                // (5.0 §3.3.2.3.4): under 5.0 add one or a level, under 3.x
                // a level.
                let topic = if !topic.is_empty() || properties.topic_alias.is_some() {
                    topic
                } else if version.is_v5() && alias {
                    properties.topic_alias = NonZeroU16::new(1);
                    topic
                } else {
                    MqttString::from_static("t")
                };
                Publish {
                    // DUP is 0 at QoS 0 [MQTT-3.3.1-2].
                    dup: dup && has_id,
                    qos,
                    retain,
                    topic,
                    packet_id: has_id.then_some(id),
                    properties,
                    payload,
                }
            },
        )
}

fn ack(version: ProtocolVersion, codes: &'static [ReasonCode]) -> impl Strategy<Value = Ack> {
    (
        packet_id(),
        v5_or_default(version, reason(codes)),
        v5_or_default(version, ack_properties()),
    )
        .prop_map(|(packet_id, reason_code, properties)| Ack {
            packet_id,
            reason_code,
            properties,
        })
}

fn subscription_options(version: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    let v5_options = (
        any::<bool>(),
        any::<bool>(),
        select(
            &[
                RetainHandling::SendAtSubscribe,
                RetainHandling::SendIfNew,
                RetainHandling::DoNotSend,
            ][..],
        ),
    );
    (any_qos(), v5_or_default(version, v5_options)).prop_map(
        |(qos, (no_local, retain_as_published, retain_handling))| SubscriptionOptions {
            qos,
            no_local,
            retain_as_published,
            retain_handling,
        },
    )
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Subscribe> {
    (
        packet_id(),
        v5_or_default(version, subscribe_properties()),
        vec(
            (topic_filter(), subscription_options(version))
                .prop_map(|(filter, options)| Subscription { filter, options }),
            1..6,
        ),
    )
        .prop_map(|(packet_id, properties, subscriptions)| Subscribe {
            packet_id,
            properties,
            subscriptions,
        })
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = SubAck> {
    let codes = if version.is_v5() {
        SUBACK_CODES
    } else {
        SUBACK_V3_CODES
    };
    (
        packet_id(),
        v5_or_default(version, ack_properties()),
        vec(reason(codes), 1..8),
    )
        .prop_map(|(packet_id, properties, reason_codes)| SubAck {
            packet_id,
            properties,
            reason_codes,
        })
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Unsubscribe> {
    (
        packet_id(),
        v5_or_default(version, unsubscribe_properties()),
        vec(topic_filter(), 1..6),
    )
        .prop_map(|(packet_id, properties, filters)| Unsubscribe {
            packet_id,
            properties,
            filters,
        })
}

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = UnsubAck> {
    (
        packet_id(),
        v5_or_default(version, ack_properties()),
        // 3.1.1 UNSUBACK has no payload; 5.0 has a code per filter.
        v5_or_default(version, vec(reason(UNSUBACK_CODES), 1..8)),
    )
        .prop_map(|(packet_id, properties, reason_codes)| UnsubAck {
            packet_id,
            properties,
            reason_codes,
        })
}

fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Disconnect> {
    (
        v5_or_default(version, reason(DISCONNECT_CODES)),
        v5_or_default(version, disconnect_properties()),
    )
        .prop_map(|(reason_code, properties)| Disconnect {
            reason_code,
            properties,
        })
}

fn auth() -> impl Strategy<Value = Auth> {
    (reason(AUTH_CODES), auth_properties()).prop_map(|(reason_code, properties)| Auth {
        reason_code,
        properties,
    })
}

/// Any valid packet for a connection of `version`.
fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut choices = vec![
        connect().prop_map(|c| Packet::Connect(Box::new(c))).boxed(),
        connack(version).prop_map(Packet::from).boxed(),
        // PUBLISH is the packet that matters most: weigh it up.
        publish(version).prop_map(Packet::Publish).boxed(),
        publish(version).prop_map(Packet::Publish).boxed(),
        ack(version, PUBACK_CODES).prop_map(Packet::PubAck).boxed(),
        ack(version, PUBACK_CODES).prop_map(Packet::PubRec).boxed(),
        ack(version, PUBREL_CODES).prop_map(Packet::PubRel).boxed(),
        ack(version, PUBREL_CODES).prop_map(Packet::PubComp).boxed(),
        subscribe(version).prop_map(Packet::Subscribe).boxed(),
        suback(version).prop_map(Packet::SubAck).boxed(),
        unsubscribe(version).prop_map(Packet::Unsubscribe).boxed(),
        unsuback(version).prop_map(Packet::UnsubAck).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(version).prop_map(Packet::from).boxed(),
    ];
    if version.is_v5() {
        choices.push(auth().prop_map(Packet::from).boxed());
    }
    Union::new(choices).boxed()
}

/// A version and a packet valid under it.
fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    any_version().prop_flat_map(|v| (Just(v), packet(v)))
}

/// A version and a few packets valid under it.
fn versioned_packets(max: usize) -> impl Strategy<Value = (ProtocolVersion, Vec<Packet>)> {
    any_version().prop_flat_map(move |v| (Just(v), vec(packet(v), 1..max)))
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

fn encode(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    packet.encode(version, &mut buf).unwrap();
    buf
}

/// Length of the fixed header at the front of a whole encoded packet.
fn header_len(frame: &[u8]) -> usize {
    1 + frame[1..].iter().position(|b| b & 0x80 == 0).unwrap() + 1
}

/// Whether a packet is an acknowledgement, DISCONNECT or AUTH with no
/// properties under 5.0: the packets whose reason code and property length
/// may be written although they could be left out.
fn has_short_form(packet: &Packet) -> bool {
    match packet {
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            a.properties.is_empty()
        }
        Packet::Disconnect(d) => d.properties.is_empty(),
        Packet::Auth(a) => a.properties.is_empty(),
        _ => false,
    }
}

/// Checks what the decoder accepted from `consumed` against its re-encoding.
///
/// The decoder is strict, so almost every accepted input is the one form
/// the encoder writes. MQTT 5.0 allows exactly two other forms, both of
/// which the encoder normalises:
///
/// 1. An acknowledgement, DISCONNECT or AUTH may spell out what its shortest
///    form leaves implicit (§3.4.2.1, §3.14.2.1, §3.15.2.1): a Success reason
///    code with no properties (`40 03 00 01 00`, `E0 01 00`), or a property
///    length of 0 (`40 04 00 01 10 00`, `E0 02 00 00`). The re-encoding is
///    the consumed bytes without those trailing zeros.
/// 2. Properties may come in any order (§2.2.2.2); the encoder writes them
///    in a fixed order, so the re-encoding is a permutation of the consumed
///    bytes, of the same length.
///
/// Any other difference fails the test. In every case the re-encoding must
/// decode to the same packet and be its own canonical form.
fn check_reencoding(packet: &Packet, version: ProtocolVersion, consumed: &[u8]) {
    let wire = encode(packet, version);
    assert_eq!(
        wire.len(),
        packet.encoded_len(version),
        "encoded_len of {packet:?}"
    );
    if wire[..] == consumed[..] {
        return;
    }
    let effective = match packet {
        Packet::Connect(c) => c.protocol,
        _ => version,
    };
    assert!(
        effective.is_v5(),
        "{version}: {packet:?} accepted from non-canonical {consumed:02x?}, re-encoded as {wire:02x?}"
    );
    if has_short_form(packet) {
        let body = &consumed[header_len(consumed)..];
        let short = &wire[header_len(&wire)..];
        // DISCONNECT is written with its property length after a reason
        // code, so a received reason-only form re-encodes one zero longer.
        let extra = body
            .strip_prefix(short)
            .or_else(|| {
                matches!(packet, Packet::Disconnect(_))
                    .then(|| short.strip_prefix(body))
                    .flatten()
            })
            .unwrap_or_else(|| {
                panic!("{packet:?}: {consumed:02x?} is not {wire:02x?} with a longer tail")
            });
        assert!(
            matches!(extra, [0] | [0, 0]),
            "{packet:?}: {consumed:02x?} differs from {wire:02x?} by more than implicit zeros"
        );
    } else {
        let mut a = consumed.to_vec();
        let mut b = wire.to_vec();
        a.sort_unstable();
        b.sort_unstable();
        assert!(
            a == b,
            "{packet:?}: {consumed:02x?} and {wire:02x?} differ by more than property order"
        );
    }
    let mut again = wire.clone();
    let redecoded = Packet::decode(&mut again, version, &DecodeLimits::UNLIMITED)
        .unwrap()
        .unwrap();
    assert_eq!(&redecoded, packet);
    assert!(again.is_empty());
    assert_eq!(
        encode(&redecoded, version),
        wire,
        "re-encoding is not stable"
    );
}

/// Decodes `input` packet after packet, as a connection would, and checks
/// each packet accepted; stops at the first `None` or error. Never panics
/// unless the codec is wrong.
fn decode_all(input: &[u8], version: ProtocolVersion, limits: &DecodeLimits) -> Vec<Packet> {
    let mut buf = BytesMut::from(input);
    let mut packets = Vec::new();
    loop {
        let before = buf.clone();
        let frame_len = Packet::frame_len(&before, version, limits);
        match Packet::decode(&mut buf, version, limits) {
            Ok(Some(packet)) => {
                let consumed = &before[..before.len() - buf.len()];
                assert_eq!(frame_len, Ok(Some(consumed.len())), "frame_len disagrees");
                check_reencoding(&packet, version, consumed);
                packets.push(packet);
            }
            Ok(None) => {
                assert_eq!(buf, before, "Ok(None) consumed bytes");
                // The frame is incomplete: either its header or its body.
                match frame_len {
                    Ok(None) => {}
                    Ok(Some(n)) => assert!(n > before.len(), "None with a whole frame"),
                    Err(e) => panic!("frame_len failed with {e} where decode wanted more"),
                }
                return packets;
            }
            Err(_) => return packets,
        }
    }
}

/// A small change to valid bytes, for inputs that are almost right.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<Index>().prop_map(Mutation::Remove),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match *m {
        Mutation::Flip(ref i, bit) => {
            let i = i.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        Mutation::Set(ref i, b) => {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        Mutation::Insert(ref i, b) => bytes.insert(i.index(bytes.len() + 1), b),
        Mutation::Remove(ref i) => {
            bytes.remove(i.index(bytes.len()));
        }
        Mutation::Truncate(ref i) => bytes.truncate(i.index(bytes.len())),
    }
}

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// `decode(encode(p)) == p`, the whole frame is consumed, and
    /// `encoded_len` is what `encode` writes; a PUBLISH lent as a
    /// `OutgoingPublish` encodes to the same bytes.
    #[test]
    fn every_packet_round_trips((version, packet) in versioned_packet()) {
        let wire = encode(&packet, version);
        prop_assert_eq!(wire.len(), packet.encoded_len(version));
        // A frame as the encoder writes it is canonical.
        check_reencoding(&packet, version, &wire);
        // A PUBLISH encodes to the same bytes borrowed, and back to itself
        // owned.
        if let Packet::Publish(p) = &packet {
            let borrowed = p.as_borrowed();
            let mut lent = BytesMut::new();
            borrowed.encode(version, &mut lent).unwrap();
            prop_assert_eq!(&lent[..], &wire[..]);
            prop_assert_eq!(borrowed.encoded_len(version), wire.len());
            prop_assert_eq!(&borrowed.to_owned(), p);
        }

        let mut buf = wire.clone();
        let decoded = Packet::decode(&mut buf, version, &DecodeLimits::UNLIMITED);
        prop_assert_eq!(decoded, Ok(Some(packet.clone())));
        prop_assert!(buf.is_empty());

        // Every strict prefix is only "need more bytes".
        for cut in [0, 1, wire.len() / 2, wire.len() - 1] {
            let mut part = BytesMut::from(&wire[..cut]);
            prop_assert_eq!(Packet::decode(&mut part, version, &DecodeLimits::UNLIMITED), Ok(None));
            prop_assert_eq!(part.len(), cut);
        }
    }

    /// A packet decodes with the default limits too, when it fits them, and
    /// stops exactly at its end when another packet follows.
    #[test]
    fn decoding_stops_at_the_frame_boundary(
        (version, packets) in versioned_packets(3),
    ) {
        let mut wire = BytesMut::new();
        for p in &packets {
            p.encode(version, &mut wire).unwrap();
        }
        let decoded = decode_all(&wire, version, &DecodeLimits::DEFAULT);
        prop_assert_eq!(decoded, packets);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Arbitrary bytes: no panic; what is accepted re-encodes canonically.
    #[test]
    fn arbitrary_bytes_never_panic(input in vec(any::<u8>(), 0..512)) {
        for version in VERSIONS {
            decode_all(&input, version, &DecodeLimits::UNLIMITED);
            decode_all(&input, version, &DecodeLimits::DEFAULT);
        }
    }

    /// Arbitrary bytes after a valid first byte and remaining length, so that
    /// the body decoders, not the fixed header check, see most inputs.
    #[test]
    fn arbitrary_bodies_never_panic(
        first in any::<u8>(),
        body in vec(any::<u8>(), 0..120),
    ) {
        let mut input = vec![first, body.len() as u8];
        input.extend_from_slice(&body);
        for version in VERSIONS {
            decode_all(&input, version, &DecodeLimits::UNLIMITED);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Valid encodings with a few bytes flipped, set, inserted, removed or
    /// cut off: no panic, and what is accepted re-encodes canonically.
    #[test]
    fn mutated_encodings_never_panic(
        (version, packets) in versioned_packets(3),
        mutations in vec(mutation(), 1..4),
    ) {
        let mut wire = Vec::new();
        for p in &packets {
            p.encode(version, &mut wire).unwrap();
        }
        for m in &mutations {
            mutate(&mut wire, m);
        }
        // The connection's version may differ from the one the bytes were
        // made for: decode under each.
        for v in VERSIONS {
            decode_all(&wire, v, &DecodeLimits::UNLIMITED);
        }
    }

    /// A stream of packets cut into arbitrary chunks decodes to the same
    /// packets, and `Ok(None)` never consumes a byte.
    #[test]
    fn chunked_stream_decodes_to_the_same_packets(
        (version, packets) in versioned_packets(6),
        cuts in vec(any::<Index>(), 0..10),
    ) {
        let mut wire = BytesMut::new();
        for p in &packets {
            p.encode(version, &mut wire).unwrap();
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();

        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        let mut start = 0;
        for end in cuts {
            buf.extend_from_slice(&wire[start..end]);
            start = end;
            loop {
                let len = buf.len();
                match Packet::decode(&mut buf, version, &DecodeLimits::UNLIMITED).unwrap() {
                    Some(p) => decoded.push(p),
                    None => {
                        prop_assert_eq!(buf.len(), len);
                        break;
                    }
                }
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded, packets);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The long forms 5.0 allows for an acknowledgement, DISCONNECT or AUTH
    /// without properties (an explicit Success code, an explicit property
    /// length of 0) decode to the same packet as the short form.
    #[test]
    fn v5_long_reason_tails_decode_like_the_short_form(
        packet in prop_oneof![
            (packet_id(), reason(PUBACK_CODES)).prop_map(|(id, c)| Packet::PubAck(Ack::with_reason(id, c))),
            (packet_id(), reason(PUBACK_CODES)).prop_map(|(id, c)| Packet::PubRec(Ack::with_reason(id, c))),
            (packet_id(), reason(PUBREL_CODES)).prop_map(|(id, c)| Packet::PubRel(Ack::with_reason(id, c))),
            (packet_id(), reason(PUBREL_CODES)).prop_map(|(id, c)| Packet::PubComp(Ack::with_reason(id, c))),
            reason(DISCONNECT_CODES).prop_map(|c| Packet::from(Disconnect::new(c))),
            reason(AUTH_CODES).prop_map(|c| Packet::from(Auth { reason_code: c, properties: AuthProperties::default() })),
        ],
        with_property_length in any::<bool>(),
    ) {
        let (first, id, code) = match &packet {
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                (encode(&packet, V5)[0], Some(a.packet_id), a.reason_code)
            }
            Packet::Disconnect(d) => (0xE0, None, d.reason_code),
            Packet::Auth(a) => (0xF0, None, a.reason_code),
            _ => unreachable!(),
        };
        let mut body = Vec::new();
        if let Some(id) = id {
            body.extend_from_slice(&id.get().to_be_bytes());
        }
        body.push(code as u8);
        if with_property_length {
            body.push(0);
        }
        let mut long = vec![first, body.len() as u8];
        long.extend_from_slice(&body);

        prop_assert_eq!(decode_all(&long, V5, &DecodeLimits::DEFAULT), vec![packet]);
    }
}

// ---------------------------------------------------------------------------
// The non-canonical forms, and regressions found by the properties above.
// ---------------------------------------------------------------------------

fn decode_one(bytes: &[u8], version: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let p = Packet::decode(&mut buf, version, &DecodeLimits::DEFAULT)
        .unwrap()
        .unwrap();
    assert!(buf.is_empty());
    p
}

#[test]
fn v5_ack_with_explicit_success_and_no_properties_reencodes_short() {
    let long = [0x40, 0x03, 0x00, 0x01, 0x00];
    let p = decode_one(&long, V5);
    assert_eq!(p, Packet::PubAck(Ack::new(NonZeroU16::new(1).unwrap())));
    assert_eq!(&encode(&p, V5)[..], &[0x40, 0x02, 0x00, 0x01]);
    check_reencoding(&p, V5, &long);
}

#[test]
fn v5_ack_with_empty_property_length_reencodes_without_it() {
    let long = [0x50, 0x04, 0x00, 0x07, 0x10, 0x00];
    let p = decode_one(&long, V5);
    assert_eq!(
        p,
        Packet::PubRec(Ack::with_reason(
            NonZeroU16::new(7).unwrap(),
            NoMatchingSubscribers
        ))
    );
    assert_eq!(&encode(&p, V5)[..], &[0x50, 0x03, 0x00, 0x07, 0x10]);
    check_reencoding(&p, V5, &long);
}

#[test]
fn v5_disconnect_and_auth_long_forms_reencode_short() {
    for (long, short) in [
        (&[0xE0, 0x01, 0x00][..], &[0xE0, 0x00][..]),
        (&[0xE0, 0x02, 0x00, 0x00][..], &[0xE0, 0x00][..]),
        (&[0xF0, 0x02, 0x18, 0x00][..], &[0xF0, 0x01, 0x18][..]),
    ] {
        let p = decode_one(long, V5);
        assert_eq!(&encode(&p, V5)[..], short);
        check_reencoding(&p, V5, long);
    }
}

#[test]
fn v5_properties_out_of_order_reencode_in_the_encoders_order() {
    // PUBLISH QoS 0, topic "t", properties: User Property ("a", "b") then
    // Message Expiry Interval 5; the encoder writes the interval first.
    let bytes = [
        0x30, 0x11, // PUBLISH, remaining length 17
        0x00, 0x01, b't', // topic
        0x0C, // property length 12
        0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', // User Property
        0x02, 0x00, 0x00, 0x00, 0x05, // Message Expiry Interval
        b'x', // payload
    ];
    let p = decode_one(&bytes, V5);
    let Packet::Publish(publish) = &p else {
        panic!("{p:?}")
    };
    assert_eq!(publish.properties.message_expiry_interval, Some(5));
    assert_eq!(publish.properties.user_properties().len(), 1);
    assert_ne!(&encode(&p, V5)[..], &bytes[..]);
    check_reencoding(&p, V5, &bytes);
}

#[test]
fn v3_packets_have_no_short_forms() {
    // Under 3.1.1 an acknowledgement is exactly the packet identifier: a
    // trailing reason code is a trailing byte.
    for version in [V3_1, V3_1_1] {
        let mut buf = BytesMut::from(&[0x40, 0x03, 0x00, 0x01, 0x00][..]);
        assert!(Packet::decode(&mut buf, version, &DecodeLimits::DEFAULT).is_err());
        let mut buf = BytesMut::from(&[0xE0, 0x01, 0x00][..]);
        assert!(Packet::decode(&mut buf, version, &DecodeLimits::DEFAULT).is_err());
    }
}
