//! Encode and decode MQTT packets the way another project would use
//! `mqtt-codec`: a client's CONNECT and PUBLISH go onto the wire, arrive in
//! pieces on the other side, and are decoded without copying the payload.
//!
//! Run with `cargo run -p examples --example codec`.

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Connect, DecodeLimits, MqttString, Packet, ProtocolVersion, Publish, QoS, UserProperty,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let version = ProtocolVersion::V5;

    // The client side: build packets and encode them into one buffer.
    let mut connect = Connect::new(version, MqttString::try_from("sensor-17")?);
    connect.keep_alive = 30;
    connect.properties.session_expiry_interval = Some(3600);

    let mut publish = Publish::new(
        MqttString::try_from("plant/line-3/temperature")?,
        Bytes::from_static(b"{\"celsius\": 21.5}"),
    );
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = NonZeroU16::new(1);
    publish.properties.extras_mut().content_type = Some(MqttString::try_from("application/json")?);
    publish
        .properties
        .extras_mut()
        .user_properties
        .push(UserProperty::new(
            MqttString::try_from("unit")?,
            MqttString::try_from("celsius")?,
        ));

    let mut wire = BytesMut::new();
    for packet in [Packet::Connect(Box::new(connect)), Packet::Publish(publish)] {
        println!(
            "encode {:<8} {:>3} bytes",
            packet.packet_type().name(),
            packet.encoded_len(version)
        );
        packet.encode(version, &mut wire)?;
    }
    println!("wire: {:02x?}", &wire[..]);

    // The server side: bytes arrive 7 at a time; decode whatever is whole.
    let limits = DecodeLimits::default();
    let mut input = BytesMut::new();
    for chunk in wire.chunks(7) {
        input.extend_from_slice(chunk);
        while let Some(packet) = Packet::decode(&mut input, version, &limits)? {
            match packet {
                Packet::Connect(c) => println!(
                    "decoded CONNECT from {:?} ({}, keep alive {} s)",
                    c.client_id, c.protocol, c.keep_alive
                ),
                Packet::Publish(p) => println!(
                    "decoded PUBLISH to {:?} at {:?}: {} ({:?})",
                    p.topic,
                    p.qos,
                    String::from_utf8_lossy(&p.payload),
                    p.properties.content_type(),
                ),
                other => println!("decoded {:?}", other.packet_type()),
            }
        }
    }

    // A corrupt packet is an error naming the rule it breaks and the reason
    // code a broker sends before closing the connection.
    let mut corrupt = BytesMut::from(&[0x82u8, 0x02, 0x00, 0x00][..]);
    match Packet::decode(&mut corrupt, version, &limits) {
        Err(e) => println!("refused: {e} -> send {}", e.reason_code()),
        Ok(p) => println!("unexpectedly accepted {p:?}"),
    }
    Ok(())
}
