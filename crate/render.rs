//! The render loop: a batch of images, one objective each, N optimization
//! steps, snapshots, progress and cancellation (see issue 5).
