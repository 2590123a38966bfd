//! The objective text syntax (shared by the CLI and the page): what parses,
//! to what, and the errors for what does not or does not fit the network.
#![cfg(not(target_arch = "wasm32"))]

use featvis::objective::{plan, Direction, Objective, Part, Term, ALL_IMAGES, KIND_CHANNEL, KIND_NEURON};

fn parse(text: &str) -> Objective {
    Objective::parse(text).unwrap_or_else(|e| panic!("`{text}` should parse: {e}"))
}

fn err(text: &str) -> String {
    match Objective::parse(text) {
        Ok(o) => panic!("`{text}` should not parse, got {o:?}"),
        Err(e) => e.to_string(),
    }
}

fn plan_err(text: &str, batch: usize, size: usize, has_fc: bool) -> String {
    plan(&parse(text), batch, size, size, has_fc, if has_fc { 1000 } else { 0 }).expect_err(text).to_string()
}

#[test]
fn valid_objectives_parse_to_weighted_terms() {
    let o = parse("conv4_3:12 - 100*diversity(conv4_3)");
    assert_eq!(
        o.parts,
        vec![
            Part { weight: 1.0, term: Term::Channel { layer: "conv4_3".into(), channel: 12 }, batch: None },
            Part { weight: -100.0, term: Term::Diversity { layer: "conv4_3".into() }, batch: None },
        ]
    );
    assert_eq!(parse("conv4_3:12@3,5").parts[0].term, Term::Neuron { layer: "conv4_3".into(), channel: 12, x: Some(3), y: Some(5) });
    assert_eq!(
        parse(" conv4_3_pre_relu : 12 @ ").parts[0].term,
        Term::Neuron { layer: "conv4_3_pre_relu".into(), channel: 12, x: None, y: None }
    );
    assert_eq!(parse("neuron(conv1_1, 2)").parts[0].term, parse("conv1_1:2@").parts[0].term);
    assert_eq!(parse("channel(conv1_1, 2)"), parse("conv1_1:2"));
    // Weights multiply, on either side, and distribute over parentheses.
    let o = parse("-0.5 * (conv1_1:1 - 2*conv1_1:2) * 3 + 1e-2*tv()");
    let w: Vec<f32> = o.parts.iter().map(|p| p.weight).collect();
    assert_eq!(w, vec![-1.5, 3.0, 0.01]);
    assert_eq!(parse("conv2_2:5[3]").parts[0].batch, Some(3));
    assert_eq!(
        parse("direction(conv1_1, 3=1, 7=-0.5)").parts[0].term,
        Term::Direction { layer: "conv1_1".into(), vector: Direction::Sparse(vec![(3, 1.0), (7, -0.5)]) }
    );
    assert_eq!(parse("l1(0.5)").parts[0].term, Term::L1 { constant: 0.5 });
    assert_eq!(parse("L1()").parts[0].term, Term::L1 { constant: 0.0 });
    assert_eq!(parse("total_variation()"), parse("tv()"));
    assert_eq!(parse("layer(pool3)"), parse("deepdream(pool3)"));
    assert_eq!(parse("class_logit(281)"), parse("class(281)"));
}

#[test]
fn malformed_objectives_say_what_and_where() {
    for (text, needle) in [
        ("", "empty"),
        ("   ", "empty"),
        ("conv4_3", "needs a channel"),
        ("conv4_3:", "channel number"),
        ("conv4_3:x", "channel number"),
        ("conv4_3:12 +", "expected a layer"),
        ("conv4_3:12 conv4_3:13", "expected `+`, `-`"),
        ("conv4_3:12@3", "expected `,`"),
        ("2", "a number alone"),
        ("2*3", "a number alone"),
        ("conv4_3:1 * conv4_3:2", "product of two objectives"),
        ("foo(conv1_1)", "unknown function `foo`"),
        ("diversity()", "layer name"),
        ("diversity(conv1_1", "expected `)`"),
        ("direction(conv1_1)", "direction needs components"),
        ("direction(conv1_1, 1, 2=3)", "not both"),
        ("direction(conv1_1, 1.5=3)", "`channel=value`"),
        ("conv1_1:1[", "batch image"),
        ("conv1_1:1[2", "expected `]`"),
        ("-conv1_1:-1", "channel number"),
    ] {
        let e = err(text);
        assert!(e.contains(needle), "`{text}`: error `{e}` should mention `{needle}`");
        assert!(e.contains("character") || text.trim().is_empty(), "`{text}`: error `{e}` should say where");
    }
}

#[test]
fn objectives_are_checked_against_the_network() {
    let e = plan_err("conv9_9:1", 1, 64, false);
    assert!(e.contains("conv9_9") && e.contains("conv5_3"), "{e}");
    let e = plan_err("conv1_1:64", 1, 64, false);
    assert!(e.contains("channel 64") && e.contains("0..63"), "{e}");
    let e = plan_err("conv5_3:0@5,5", 1, 32, false);
    assert!(e.contains("(5, 5)") && e.contains("2x2"), "{e}");
    let e = plan_err("conv1_1:1[4]", 2, 32, false);
    assert!(e.contains("image 4") && e.contains("0..1"), "{e}");
    let e = plan_err("class(3)", 1, 32, false);
    assert!(e.contains("classifier head"), "{e}");
    let e = plan_err("class(1000)", 1, 32, true);
    assert!(e.contains("class 1000") && e.contains("0..999"), "{e}");
    let e = plan_err("channel_interpolate(conv1_1, 1, conv2_1, 2)", 1, 32, false);
    assert!(e.contains("at least 2"), "{e}");
    let e = plan_err("conv5_3:1", 2, 8, false);
    assert!(e.contains("8x8") && e.contains("16x16"), "{e}");
    let e = plan_err("direction(conv1_1, 1, 2, 3)", 1, 8, false);
    assert!(e.contains("3 components") && e.contains("64 channels"), "{e}");
    let e = plan_err("diversity(conv1_1) - diversity(conv1_1_pre_relu)", 2, 8, false);
    assert!(e.contains("before and after"), "{e}");
    let e = Objective::per_image(vec![parse("conv1_1:1 - diversity(conv1_1)")]).unwrap_err().to_string();
    assert!(e.contains("whole batch"), "{e}");
}

#[test]
fn plans_use_lucids_scales() {
    // channel: mean over batch and space; neuron and class: sums over the batch.
    let p = plan(&parse("conv1_1:3 + 2*conv1_1:4@ + 0.5*conv1_1:5[1]"), 2, 6, 10, false, 0).unwrap();
    assert_eq!(p.layers.len(), 1);
    let s = &p.layers[0].specs;
    assert_eq!((s[0].kind, s[0].batch, s[0].scale), (KIND_CHANNEL, ALL_IMAGES, 1.0 / (2.0 * 60.0)));
    assert_eq!((s[1].kind, s[1].x, s[1].y, s[1].scale), (KIND_NEURON, 5, 3, 2.0));
    assert_eq!((s[2].batch, s[2].scale), (1, 0.5 / 60.0));
    // channel_interpolate: image b weights the second term by b/(B-1).
    let p = plan(&parse("channel_interpolate(conv1_1, 1, conv1_2, 2)"), 3, 4, 4, false, 0).unwrap();
    let w: Vec<(u32, f32)> = p.layers.iter().flat_map(|l| l.specs.iter().map(|s| (s.batch, s.scale * 16.0))).collect();
    assert_eq!(w, vec![(0, 1.0), (1, 0.5), (2, 0.0), (0, 0.0), (1, 0.5), (2, 1.0)]);
    // Regularizers land per image.
    let p = plan(&parse("conv1_1:0 - 0.5*tv() + 2*blur()[1] - l1(0.25)"), 2, 4, 4, false, 0).unwrap();
    assert_eq!((p.image[0].tv, p.image[0].blur, p.image[0].l1, p.image[0].l1_constant), (-0.5, 0.0, -1.0, 0.25));
    assert_eq!((p.image[1].tv, p.image[1].blur), (-0.5, 2.0));
    // Every objective prints back to text that parses to itself.
    for text in
        ["conv4_3:12 - 100*diversity(conv4_3)", "0.5*conv2_2:5[3] + deepdream(conv3_3)", "class(281) - 0.01*tv() - l1(0.5) + blur()"]
    {
        assert_eq!(parse(&parse(text).to_string()), parse(text));
    }
}
