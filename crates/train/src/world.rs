//! The processes of one run: a single process (the default build, and a build with the
//! `mpi` feature started without `mpirun`), or the ranks of an MPI job. The trainer talks
//! to the other ranks only through [`World`]'s few collectives, each of which is a no-op
//! (or a copy) for a single process, so the training loop reads the same either way and
//! this is the one file that names MPI.
//!
//! Every sum across ranks is done here in rank order (each rank's part is gathered, then
//! added 0 + 1 + 2 + …), never by the MPI library's reduction, whose tree and order depend
//! on the library and the number of ranks: the same job gives the same bits on every run.

/// The ranks of a run and the collectives between them. Rank 0 is the root: it alone
/// writes files and prints.
pub struct World {
    rank: usize,
    size: usize,
    #[cfg(feature = "mpi")]
    mpi: Option<mpi_world::Mpi>,
}

impl World {
    /// One process, no communication.
    pub fn single() -> World {
        World {
            rank: 0,
            size: 1,
            #[cfg(feature = "mpi")]
            mpi: None,
        }
    }

    /// The job this process belongs to: the ranks of an MPI job when built with the `mpi`
    /// feature (one rank when started without `mpirun`), else a single process. Call once,
    /// first thing in `main`, and keep it until the program ends (dropping it finalizes MPI).
    pub fn from_launcher() -> World {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = mpi_world::Mpi::initialize() {
            return World { rank: mpi.rank(), size: mpi.size(), mpi: Some(mpi) };
        }
        World::single()
    }

    /// This process's rank, 0..size.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// How many ranks the job has.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether this is rank 0, which writes the run's files and owns the console.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// Gives every rank rank 0's `bytes` (other ranks' contents are replaced).
    pub fn broadcast_bytes(&self, bytes: &mut Vec<u8>) {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            mpi.broadcast_bytes(bytes);
        }
        let _ = bytes;
    }

    /// Whether `flag` holds on any rank (every rank gets the same answer).
    pub fn any(&self, flag: bool) -> bool {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            return mpi.any(flag);
        }
        flag
    }

    /// Every rank's `mine`, concatenated in rank order, on every rank; `counts[r]` is
    /// rank r's length.
    pub fn all_gather_f64(&self, mine: &[f64], counts: &[usize]) -> Vec<f64> {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            return mpi.all_gather(mine, counts);
        }
        debug_assert_eq!(counts, [mine.len()]);
        mine.to_vec()
    }

    /// The sum of each rank's `x`, added in rank order, on every rank.
    pub fn sum_in_rank_order(&self, x: f64) -> f64 {
        let ones = vec![1; self.size];
        let all = self.all_gather_f64(&[x], &ones);
        all[1..].iter().fold(all[0], |sum, &x| sum + x)
    }

    /// The reduce half of an all-reduce, in rank order: `send` is this rank's vector, cut
    /// into the ranks' slices (`counts[r]` values for rank r, in rank order); `out` (this
    /// rank's count) receives the sum of every rank's copy of this rank's slice, added
    /// rank 0 first. `scratch` is reused from call to call.
    pub fn reduce_scatter_f32(
        &self,
        send: &[f32],
        counts: &[usize],
        out: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            return mpi.reduce_scatter(send, counts, out, scratch);
        }
        debug_assert_eq!(counts, [send.len()]);
        let _ = scratch;
        out.copy_from_slice(send);
    }

    /// The gather half: every rank's slice `mine` (`counts[r]` values for rank r) laid out
    /// in rank order in `out`, on every rank.
    pub fn all_gather_f32(&self, mine: &[f32], counts: &[usize], out: &mut [f32]) {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            return mpi.all_gather_into(mine, counts, out);
        }
        debug_assert_eq!(counts, [mine.len()]);
        out.copy_from_slice(mine);
    }

    /// Rank 0 gets every rank's slice in rank order in `out` (other ranks' `out` is left
    /// as it is).
    pub fn gather_f32_to_root(&self, mine: &[f32], counts: &[usize], out: &mut [f32]) {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            return mpi.gather_to_root(mine, counts, out);
        }
        debug_assert_eq!(counts, [mine.len()]);
        out.copy_from_slice(mine);
    }

    /// Ends the whole job with `code`: every rank stops (after this rank printed why).
    pub fn abort(&self, code: i32) -> ! {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            mpi.abort(code);
        }
        std::process::exit(code)
    }
}

#[cfg(feature = "mpi")]
mod mpi_world {
    use mpi::collective::{CommunicatorCollectives, Root};
    use mpi::datatype::{Partition, PartitionMut};
    use mpi::environment::Universe;
    use mpi::topology::{Communicator, SimpleCommunicator};
    use mpi::traits::Equivalence;
    use mpi::Count;
    use rayon::prelude::*;

    /// Broadcasts go in pieces of at most this many bytes (MPI counts are 32-bit).
    const PIECE: usize = 1 << 30;

    /// MPI's world communicator, with the universe that finalizes MPI when dropped.
    pub struct Mpi {
        world: SimpleCommunicator,
        _universe: Universe,
    }

    /// MPI's counts and displacements for slices of `counts` values; a count past MPI's
    /// 32-bit range is a model no rank could exchange.
    fn partition(counts: &[usize]) -> (Vec<Count>, Vec<Count>) {
        let count =
            |n: usize| Count::try_from(n).expect("a slice of fewer than 2^31 values (checked at start)");
        let mut displs = Vec::with_capacity(counts.len());
        let mut at = 0;
        for &n in counts {
            displs.push(count(at));
            at += n;
        }
        (counts.iter().map(|&n| count(n)).collect(), displs)
    }

    impl Mpi {
        /// MPI started, or None when it was started already. Only the main thread calls
        /// MPI (between the pool tasks of a step).
        pub fn initialize() -> Option<Mpi> {
            let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)?;
            Some(Mpi { world: universe.world(), _universe: universe })
        }

        pub fn rank(&self) -> usize {
            self.world.rank() as usize
        }

        pub fn size(&self) -> usize {
            self.world.size() as usize
        }

        pub fn broadcast_bytes(&self, bytes: &mut Vec<u8>) {
            let root = self.world.process_at_rank(0);
            let mut len = bytes.len() as u64;
            root.broadcast_into(&mut len);
            bytes.resize(len as usize, 0);
            for piece in bytes.chunks_mut(PIECE) {
                root.broadcast_into(piece);
            }
        }

        pub fn any(&self, flag: bool) -> bool {
            // A max of 0s and 1s: any order gives the same answer.
            let mut any = 0i32;
            self.world.all_reduce_into(&(flag as i32), &mut any, mpi::collective::SystemOperation::max());
            any != 0
        }

        pub fn all_gather<T: Equivalence + Default + Clone>(&self, mine: &[T], counts: &[usize]) -> Vec<T> {
            let mut out = vec![T::default(); counts.iter().sum()];
            let (c, d) = partition(counts);
            self.world.all_gather_varcount_into(mine, &mut PartitionMut::new(&mut out[..], c, d));
            out
        }

        pub fn all_gather_into(&self, mine: &[f32], counts: &[usize], out: &mut [f32]) {
            let (c, d) = partition(counts);
            self.world.all_gather_varcount_into(mine, &mut PartitionMut::new(out, c, d));
        }

        pub fn gather_to_root(&self, mine: &[f32], counts: &[usize], out: &mut [f32]) {
            let root = self.world.process_at_rank(0);
            if self.rank() == 0 {
                let (c, d) = partition(counts);
                root.gather_varcount_into_root(mine, &mut PartitionMut::new(out, c, d));
            } else {
                root.gather_varcount_into(mine);
            }
        }

        pub fn reduce_scatter(
            &self,
            send: &[f32],
            counts: &[usize],
            out: &mut [f32],
            scratch: &mut Vec<f32>,
        ) {
            // Each rank sends rank r its copy of slice r, then adds the copies it received
            // in rank order.
            let n = self.size();
            let mine = counts[self.rank()];
            scratch.resize(n * mine, 0.0);
            let (send_counts, send_displs) = partition(counts);
            let (recv_counts, recv_displs) = partition(&vec![mine; n]);
            self.world.all_to_all_varcount_into(
                &Partition::new(send, send_counts, send_displs),
                &mut PartitionMut::new(&mut scratch[..], recv_counts, recv_displs),
            );
            const CHUNK: usize = 16 * 1024;
            let copies = &scratch[..];
            out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
                let at = c * CHUNK;
                out.copy_from_slice(&copies[at..at + out.len()]);
                for r in 1..n {
                    let copy = &copies[r * mine + at..r * mine + at + out.len()];
                    out.iter_mut().zip(copy).for_each(|(sum, &x)| *sum += x);
                }
            });
        }

        pub fn abort(&self, code: i32) -> ! {
            self.world.abort(code)
        }
    }
}
